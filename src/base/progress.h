#pragma once
// A progress line on stderr with rate and ETA; redraws in place on a terminal, prints
// occasional lines otherwise (logs, CI).
#include <cstdint>
#include <string>

#include "base/timer.h"

namespace r1 {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  // Draws nothing until `seconds` have passed (then as usual, and a final line): a phase that is
  // usually short stays quiet and shows itself only when it runs long.
  void quiet_for(double seconds) { quiet_s_ = seconds; }
  // Advance by n and attach a short status text (e.g. "loss 2.31").
  void update(int64_t n, const std::string& status = "");
  void finish();

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  Timer timer_;
  double last_draw_ = -1.0, quiet_s_ = 0.0;
  bool tty_, finished_ = false, drawn_ = false;
};

}  // namespace r1
