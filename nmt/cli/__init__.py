"""The command-line entry points (nmt-train, nmt-evaluate, nmt-translate, nmt-export, nmt-serve,
nmt-compare): Hydra apps that read their config and call the library; ``startup`` holds what they share."""
