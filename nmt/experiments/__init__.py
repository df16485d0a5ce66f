"""The papers' comparisons: runs over seeds, kept rows, the verdicts' statistics, reports and plots."""
