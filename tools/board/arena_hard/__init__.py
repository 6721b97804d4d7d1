"""The Arena-Hard-Auto v0.1 board (PROTOCOL=arena_hard): two games per prompt against the
baseline, five labels, its Bradley-Terry score. Modules:
- judge.py: its judge config, prompt and labels, and how a reply is read (the judge's side);
- score.py: battles, Bradley-Terry, bootstrap, style control, token counts (as show_result.py);
- board.py: the builder (plays the games, then the pairwise board's files with Arena-Hard's
  section), its table, its export in Arena-Hard's own layout.
Imports go one way: board -> judge, score; board -> board.pairwise (the shared board files).
"""
