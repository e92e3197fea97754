// What a speculative proposal costs, learned from the steps the scheduler times, and so
// how many of a sequence's proposals must be accepted for speculating to pay.
//
// A decode step of b sequences with no proposals takes plain(b) seconds; with D proposals
// made in all (drafted and fed for verification) it takes about plain(b) + D * c, where c is
// one proposal's cost: a draft model's step for it and its token's share of the
// verification. Proposals of one sequence that make the step n * c longer hold back all b
// sequences, which is worth b * n * c / plain(b) tokens of plain decoding; they pay when more
// than that many are accepted. plain(b) comes from steps without proposals (a sequence that
// sits out, or a step the policy plans plain to measure it, every `refresh_steps` decode
// steps); c from steps with proposals, against plain(b) of the same b.
#pragma once
#include <cstdint>
#include <vector>

namespace troupe {

class speculation_cost {
 public:
  // b from 1 to max_batch is learned (speculation stops past it anyway).
  explicit speculation_cost(int32_t max_batch, int32_t refresh_steps = 128);

  // A decode step of b sequences (no prompt chunk) with `num_proposals` proposals made in all
  // took `seconds`. Steps of other shapes are not passed.
  void observe(int32_t b, int32_t num_proposals, double seconds);
  // Whether the next decode step of b sequences should carry no proposals, to measure
  // plain(b): once any step has been observed, when plain(b) has never been, or not for
  // refresh_steps decode steps.
  bool needs_plain_step(int32_t b) const;
  // Tokens n proposals of one sequence in a step of b must win to pay for themselves;
  // negative while plain(b) or c is not known.
  double break_even(int32_t b, int32_t n) const;

  double plain_seconds(int32_t b) const;       // 0 while unknown
  double seconds_per_proposal() const { return per_proposal_; }  // 0 while unknown

 private:
  struct plain_time {
    double seconds = 0;
    int64_t measured_at = -1;  // num_observed_ when last measured
  };
  std::vector<plain_time> plain_;  // index b - 1
  double per_proposal_ = 0;
  bool has_per_proposal_ = false;
  int64_t num_observed_ = 0;
  int32_t refresh_steps_;
};

}  // namespace troupe
