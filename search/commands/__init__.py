"""The verbs of `search`, one module each: a `Command` (search.commands.base) with the verb's
flags and its body. Flags several verbs share live in `options`. `search.cli` lists the
commands and builds the parser from them."""
