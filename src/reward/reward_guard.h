#pragma once
// A deadline around a reward, so no verifier can hang or crash the training job. The wrapped
// reward scores a batch in a forked worker process (the samples reach it through fork; results come
// back one JSON line each). A sample still unscored `deadline_s` after it started is given up: the
// worker is killed, the sample scores 0 with details {"timed_out": true, "raised": true} and is
// counted in counters().reward_timeouts; a worker that dies (a crash in a parser, say) scores its
// samples in flight 0 and counts them in reward_crashes. Samples it had not started are scored by a
// fresh worker. Threads cannot be killed; processes can, so the guard is a process.
// Only rule rewards are guarded this way: a reward that owns device memory or threads it needs
// after a fork (the neural reward model) runs in-process.
#include <memory>

#include "reward/reward.h"

namespace r1::reward {

struct GuardOptions {
  double deadline_s = 120.0;  // per sample, from when the worker starts it
};

class GuardedReward : public Reward {
 public:
  GuardedReward(std::unique_ptr<Reward> inner, GuardOptions o);
  std::string name() const override { return inner_->name(); }
  Result score(const Sample& s) const override;
  std::vector<Result> score_all(const std::vector<Sample>& samples, int threads) const override;

 private:
  std::unique_ptr<Reward> inner_;
  GuardOptions o_;
};

}  // namespace r1::reward
