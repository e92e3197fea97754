#!/usr/bin/env python3
"""bench/compare_report.py on known inputs: when a rate counts as sustained, the order of the
rate search, its answer, and the ratios of the comparison table."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_report as cr  # noqa: E402


def report(sent=10, ok=10, failed=0, cancelled=0, ttft_p99=100.0, tok_s=50.0, req_s=1.0, tpot_p50=20.0):
    return {"requests": {"sent": sent, "ok": ok, "failed": failed, "cancelled": cancelled},
            "requests_per_s": req_s, "output_tokens_per_s": tok_s,
            "ttft_ms": {"count": ok, "p50": ttft_p99 / 2, "p99": ttft_p99},
            "tpot_ms": {"count": ok, "p50": tpot_p50, "p99": tpot_p50 * 2}}


def search(capacity, **kw):
    """Runs next_rate against a server that sustains every rate <= capacity; the rates tried."""
    history = []
    while (rate := cr.next_rate(history, **kw)) is not None:
        history.append((rate, rate <= capacity))
    return history


class point_passes(unittest.TestCase):
    def test_all_ok_under_the_limit_passes(self):
        self.assertTrue(cr.point_passes(report(ttft_p99=1999)))

    def test_p99_at_the_limit_fails(self):
        self.assertFalse(cr.point_passes(report(ttft_p99=2000)))

    def test_one_failed_request_fails(self):
        self.assertFalse(cr.point_passes(report(sent=10, ok=9, failed=1)))

    def test_nothing_succeeded_fails(self):
        self.assertFalse(cr.point_passes(report(sent=3, ok=0, ttft_p99=0)))


class rate_search(unittest.TestCase):
    def test_doubles_until_a_failure_then_bisects(self):
        self.assertEqual(search(3.2, start=1, bisect_steps=3),
                         [(1, True), (2, True), (4, False), (3, True), (3.5, False), (3.25, False)])

    def test_answer_is_the_highest_pass_below_the_lowest_failure(self):
        history = search(3.2, start=1, bisect_steps=3)
        self.assertEqual(cr.sustained_rate(history), {"rate": 3, "capped": False})

    def test_halves_when_the_start_fails(self):
        self.assertEqual(search(0.3, start=1, bisect_steps=1), [(1, False), (0.5, False), (0.25, True), (0.375, False)])

    def test_stops_at_the_cap_and_says_so(self):
        history = search(1000, start=1, max_rate=8)
        self.assertEqual([r for r, _ in history], [1, 2, 4, 8])
        self.assertEqual(cr.sustained_rate(history), {"rate": 8, "capped": True})

    def test_nothing_sustained_down_to_the_floor(self):
        history = search(0.01, start=1, min_rate=0.25)
        self.assertEqual([r for r, _ in history], [1, 0.5, 0.25])
        self.assertEqual(cr.sustained_rate(history), {"rate": None, "capped": False})

    def test_stops_bisecting_when_the_gap_is_small(self):
        self.assertIsNone(cr.next_rate([(1, True), (1.04, False)], bisect_steps=10, precision=0.05))


class comparison(unittest.TestCase):
    def sweep(self, points):
        return {"runs": [{"param": "users", "value": u, "report": r} for u, r in points]}

    def test_ratios_are_troupe_over_llama_per_user_count(self):
        t = self.sweep([(1, report(tok_s=120, ttft_p99=40)), (4, report(tok_s=300, ttft_p99=90))])
        l = self.sweep([(1, report(tok_s=100, ttft_p99=80)), (4, report(tok_s=400, ttft_p99=90))])
        result = cr.compare(t, l, {"rate": 3, "capped": False}, {"rate": 2, "capped": False}, 200, 400)
        self.assertAlmostEqual(result["rows"][0]["output_tok_s"]["ratio"], 1.2)
        self.assertAlmostEqual(result["rows"][0]["ttft_p99_ms"]["ratio"], 0.5)
        self.assertAlmostEqual(result["rows"][1]["output_tok_s"]["ratio"], 0.75)
        self.assertAlmostEqual(result["sustained_rate"]["ratio"], 1.5)
        self.assertAlmostEqual(result["peak_rss_kb"]["ratio"], 0.5)

    def test_a_point_one_side_lacks_has_no_ratio(self):
        t = self.sweep([(1, report()), (4, report())])
        l = self.sweep([(1, report())])
        result = cr.compare(t, l, {"rate": None, "capped": False}, {"rate": 1, "capped": False})
        self.assertIsNone(result["rows"][1]["output_tok_s"]["ratio"])
        self.assertIsNone(result["sustained_rate"]["ratio"])
        self.assertIn("| 4 | -", cr.markdown(result))


class workload_files(unittest.TestCase):
    def test_derive_replaces_nested_fields_and_keeps_the_rest(self):
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "w.json"), os.path.join(d, "x.json")
            with open(src, "w") as f:
                json.dump({"seed": 1, "arrival": {"process": "poisson", "rate": 1}, "duration_s": 20}, f)
            cr.derive(src, dst, ["arrival.rate=2.5", "seed=7"])
            with open(dst) as f:
                self.assertEqual(json.load(f), {"seed": 7, "arrival": {"process": "poisson", "rate": 2.5},
                                                "duration_s": 20})

    def test_merge_concatenates_runs_in_order(self):
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for u in (1, 4):
                paths.append(os.path.join(d, f"u{u}.json"))
                with open(paths[-1], "w") as f:
                    json.dump({"tool": "troupe-load", "runs": [{"param": "users", "value": u, "report": {}}]}, f)
            cr.merge(os.path.join(d, "all.json"), paths)
            with open(os.path.join(d, "all.json")) as f:
                self.assertEqual([r["value"] for r in json.load(f)["runs"]], [1, 4])


if __name__ == "__main__":
    unittest.main()
