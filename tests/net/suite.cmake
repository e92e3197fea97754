# tests/net: the front door's codecs and server, one doctest binary.
troupe_test_suite(net troupe_net troupe_cpu)
