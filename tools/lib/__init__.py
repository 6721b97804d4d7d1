"""What the stages share: modules imported by tools/*.py (the stage scripts make runs), by
tools/board/, tools/judges/ and tools/backends/; never a stage itself. Modules:
- records.py: questions in, alpaca_eval records out, atomic writes, the answer cache, InputError;
- registry.py: models.toml, read and validated (also `python3 tools/lib/registry.py defaults`
  for make, with the system python3);
- benchsets.py: the named sets of data/benchmarks.toml, their sidecars and LIMIT samples (also
  `python3 tools/lib/benchsets.py make-info|names` for make);
- benchformats.py: each set's own file format -> normalized question records;
- messages.py: a question as chat messages (earlier turns first) and its generation settings,
  for every backend;
- conversations.py: several-turn conversations (MT-Bench), what infer asks and writes;
- chat_tokens.py: chat messages -> token ids, only the template's own markup as control tokens;
- hashes.py: content hashes of weights, remembered by path, size and mtime;
- settings_log.py: what each model's answers were made with (OUT/cache/NAME.settings.json);
- arguments.py: argparse with one-line errors;
- stages.py: the per-model loop of download, quantize, fetch_models and infer (one-line errors,
  exit 2 / 1 / 130).
Imports go down only: lib imports nothing above it, except benchsets.py reading the protocols'
table (tools/board/protocols.py, a leaf that imports nothing of the project), so that the sets
may declare only the protocols and graders the board has.
"""
