# tests/grammar: the structured-output grammars, matcher and masks, one doctest binary. The
# random-walk and trie-vs-brute-force cases load the default model's tokenizer.
troupe_test_suite(grammar troupe_grammar simdjson::simdjson DISCOVER REAL_MODEL "^smollm2: ")
