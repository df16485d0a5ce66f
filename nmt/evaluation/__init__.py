"""Scoring: sacreBLEU / chrF with signatures, and decoding + scoring a whole split."""
