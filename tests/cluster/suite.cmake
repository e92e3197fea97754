# cluster/: the routing rule, the gate's checks and flag parsing (no model, no network).
troupe_test_suite(cluster troupe_cluster)
