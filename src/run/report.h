#pragma once
// RUN/report.html: one self-contained page (inline SVG and CSS, no scripts, fonts or links) that
// opens offline, with the run's config, the latest value of every metric and a line chart per
// metric group drawn from RUN/metrics.jsonl.
#include <string>

namespace r1::run {

// Reads RUN/metrics.jsonl (a torn last line is skipped) and RUN/config.yaml (either may be missing)
// and writes RUN/report.html atomically. Returns the report's path.
std::string write_report(const std::string& run_dir);

}  // namespace r1::run
