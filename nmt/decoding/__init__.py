"""Decoding: greedy and beam search, the Translator (PyTorch, ensembles) and its CTranslate2
counterpart, the backend choice, and the CTranslate2 export."""
