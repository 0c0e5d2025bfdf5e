#include "run/report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "run/metrics.h"

namespace r1::run {

namespace {

struct Point {
  int64_t step;
  double value;
};
struct Series {
  std::string key;
  std::vector<Point> pts;  // in file order; steps ascending for a well-formed run
};
struct Metrics {
  std::vector<Series> series;  // in order of first appearance
  int64_t first_step = 0, last_step = 0;
  double first_time = 0, last_time = 0;
  size_t records = 0;
};

Metrics read_metrics(const std::string& path) {
  Metrics m;
  if (!fs::exists(path)) return m;
  std::map<std::string, size_t> index;
  std::istringstream in(fs::read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;  // torn line
    const int64_t step = j["step"].get<int64_t>();
    const double t = j.contains("time") && j["time"].is_number() ? j["time"].get<double>() : 0.0;
    if (m.records == 0) m.first_step = m.last_step = step, m.first_time = t;
    m.first_step = std::min(m.first_step, step);
    m.last_step = std::max(m.last_step, step);
    if (t > 0) m.last_time = std::max(m.last_time, t);
    ++m.records;
    for (const auto& [k, v] : j.items()) {
      if (k == "step" || k == "time" || !v.is_number()) continue;  // null = a non-finite value
      auto [it, added] = index.emplace(k, m.series.size());
      if (added) m.series.push_back({k, {}});
      m.series[it->second].pts.push_back({step, v.get<double>()});
    }
  }
  return m;
}

std::string escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

// "1e-06" -> "1e-6", "2.5e+07" -> "2.5e7": shorter labels for learning rates and big counts.
std::string tidy_exponent(std::string s) {
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  bool neg = false;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) neg = exp[0] == '-', exp.erase(0, 1);
  exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
  return mant + "e" + (neg ? "-" : "") + exp;
}

std::string fmt_value(double v) {
  const double a = std::abs(v);
  if (v == 0) return "0";
  if (a >= 1e6 || a < 1e-3) return tidy_exponent(fmt::format("{:.3g}", v));
  if (a >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

struct Ticks {
  double lo, hi, step;
  std::vector<double> at;
};

// 1-2-5 ticks covering [lo, hi]; the axis is widened to the outer ticks.
Ticks nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  const double step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  Ticks t{std::floor(lo / step) * step, std::ceil(hi / step) * step, step, {}};
  for (int i = 0;; ++i) {
    double v = t.lo + i * step;
    if (v > t.hi + step * 1e-6) break;
    if (std::abs(v) < step * 1e-6) v = 0;
    t.at.push_back(v);
  }
  return t;
}

std::string fmt_tick(double v, const Ticks& t) {
  const double m = std::max(std::abs(t.lo), std::abs(t.hi));
  if (v == 0) return "0";
  if (m >= 1e6 || m < 1e-3) return tidy_exponent(fmt::format("{:.2g}", v));
  const int decimals = std::max(0, int(std::ceil(-std::log10(t.step) - 1e-9)));
  return fmt::format("{:.{}f}", v, decimals);
}

std::string fmt_time(double t) {
  const std::time_t s = std::time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string fmt_duration(double s) {
  const int64_t n = int64_t(s);
  if (n >= 3600) return fmt::format("{}h {:02d}m", n / 3600, n % 3600 / 60);
  if (n >= 60) return fmt::format("{}m {:02d}s", n / 60, n % 60);
  return fmt::format("{:.1f}s", s);
}

// Which keys go on which chart. The first group that claims a key gets it; names follow metrics.h
// with a few common aliases, so a trainer's naming drift moves a curve, never drops it.
struct Group {
  const char* title;
  std::function<bool(std::string_view)> claims;
};
bool has(std::string_view k, std::string_view s) { return k.find(s) != std::string_view::npos; }
bool starts(std::string_view k, std::string_view s) { return k.substr(0, s.size()) == s; }

const std::vector<Group>& groups() {
  static const std::vector<Group> g = {
      {"Reward (mean per component)",
       [](std::string_view k) {
         return k == "reward" || k == "reward_mean" || (starts(k, "reward/") && !has(k, "std"));
       }},
      {"Reward std", [](std::string_view k) { return starts(k, "reward") && has(k, "std"); }},
      {"Evaluation (pass@1)",
       [](std::string_view k) { return starts(k, "eval/") || starts(k, "eval_") || has(k, "pass@"); }},
      {"Accuracy", [](std::string_view k) { return has(k, "accuracy") || k == "acc"; }},
      {"Format rate", [](std::string_view k) { return has(k, "format"); }},
      {"Response length (tokens)", [](std::string_view k) { return has(k, "length") || has(k, "_len"); }},
      {"KL to reference",
       [](std::string_view k) { return k == "kl" || starts(k, "kl/") || starts(k, "kl_"); }},
      {"Entropy", [](std::string_view k) { return has(k, "entropy"); }},
      {"Clip fraction", [](std::string_view k) { return has(k, "clip_frac") || k == "clipfrac"; }},
      {"Gradient norm", [](std::string_view k) { return has(k, "grad_norm"); }},
      {"Learning rate",
       [](std::string_view k) { return k == "lr" || has(k, "learning_rate") || k.ends_with("/lr"); }},
      {"Throughput (tokens/s)",
       [](std::string_view k) {
         return has(k, "tokens_per_s") || has(k, "tok_per_s") || has(k, "throughput");
       }},
      {"Zero-variance groups (share)", [](std::string_view k) { return has(k, "zero_var"); }},
      {"Reflection-word rate", [](std::string_view k) { return has(k, "reflection"); }},
      {"Loss", [](std::string_view k) { return has(k, "loss"); }},
      {"Time per step (s)", [](std::string_view k) { return starts(k, "time/") || starts(k, "time_"); }},
  };
  return g;
}

// Tableau-like hues, darkened where the original is too pale for a thin line on white.
constexpr const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
                                   "#2a9d8f", "#b8860b", "#d4577b", "#9c755f", "#6b6b6b"};

struct Chart {
  std::string title;
  std::vector<const Series*> series;
};

// TensorBoard's smoothing: an exponential moving average, debiased so it starts at the data.
std::vector<double> ema(const std::vector<Point>& pts, double w) {
  std::vector<double> out;
  double acc = 0, wk = 1;
  for (const Point& p : pts) {
    acc = acc * w + (1 - w) * p.value;
    wk *= w;
    out.push_back(acc / (1 - wk));
  }
  return out;
}

struct Stats {
  double min, max, last;
  int64_t min_step, max_step, last_step;
};
Stats stats(const Series& s) {
  Stats st{s.pts[0].value, s.pts[0].value, s.pts.back().value,
           s.pts[0].step,  s.pts[0].step,  s.pts.back().step};
  for (const Point& p : s.pts) {
    if (p.value < st.min) st.min = p.value, st.min_step = p.step;
    if (p.value > st.max) st.max = p.value, st.max_step = p.step;
  }
  return st;
}

std::string render_chart(const Chart& c, int64_t x0, int64_t x1, size_t color0) {
  constexpr double W = 560, H = 250, L = 60, R = 16, T = 14, B = 38;
  const double pw = W - L - R, ph = H - T - B;
  double lo = INFINITY, hi = -INFINITY;
  for (const Series* s : c.series)
    for (const Point& p : s->pts) lo = std::min(lo, p.value), hi = std::max(hi, p.value);
  const Ticks yt = nice_ticks(lo, hi, 5);
  if (x1 <= x0) x0 -= 1, x1 += 1;
  // A little room at both ends, so the first and last points do not sit on the axis line.
  constexpr double pad = 6;
  auto X = [&](double step) { return L + pad + (step - double(x0)) / double(x1 - x0) * (pw - 2 * pad); };
  auto Y = [&](double v) { return T + (yt.hi - v) / (yt.hi - yt.lo) * ph; };

  std::string o;
  o += "<div class=\"chart\">";
  o += fmt::format("<h3>{}</h3><div class=\"legend\">", escape(c.title));
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = *c.series[i];
    const Stats st = stats(s);
    o += fmt::format(
        "<span class=\"item\"><span class=\"sw\" style=\"background:{}\"></span><b>{}</b> "
        "<span class=\"num\">last {} · min {} · max {}</span></span>",
        kColors[(color0 + i) % 10], escape(s.key), fmt_value(st.last), fmt_value(st.min), fmt_value(st.max));
  }
  o += "</div>";
  o += fmt::format("<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">", W, H, escape(c.title));

  // Grid and y ticks.
  for (double v : yt.at) {
    const double y = Y(v);
    o += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", L,
                     L + pw, y, y);
    o += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 6,
                     y + 4, escape(fmt_tick(v, yt)));
  }
  // X ticks: integer steps inside the run's range.
  Ticks xt = nice_ticks(double(x0), double(x1), 6);
  if (xt.step < 1) xt = nice_ticks(double(x0), double(x0) + 6, 6);
  for (double v : xt.at) {
    if (v < double(x0) - 1e-9 || v > double(x1) + 1e-9) continue;
    const double x = X(v);
    o += fmt::format("<line class=\"axis\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>", x, x,
                     T + ph, T + ph + 4);
    o += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>", x,
                     T + ph + 17, fmt::format("{:.0f}", v));
  }
  o += fmt::format("<line class=\"axis\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\"/>", L, T,
                   T + ph);
  o += fmt::format("<line class=\"axis\" x1=\"{0:.1f}\" x2=\"{1:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\"/>", L,
                   L + pw, T + ph);
  o += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">step</text>",
                   L + pw / 2, H - 4);

  // Three layers, each over all series, so no series' faint raw line covers another's smoothed
  // line: raw lines (faint when smoothed), smoothed lines, then the hover targets.
  for (int layer = 0; layer < 3; ++layer) {
    for (size_t i = 0; i < c.series.size(); ++i) {
      const Series& s = *c.series[i];
      const char* color = kColors[(color0 + i) % 10];
      const size_t n = s.pts.size();
      // Smooth only long, noisy series: a schedule or a saturated rate is already smooth, and an
      // EMA would only draw it late. Noisy = total variation well above the net range. The EMA
      // spans ~n/150 points, so a long run gets a proportionally calmer line.
      double tv = 0;
      for (size_t k = 1; k < n; ++k) tv += std::abs(s.pts[k].value - s.pts[k - 1].value);
      const Stats st = stats(s);
      const bool smooth = n > 30 && tv > 3 * (st.max - st.min);
      // Long runs are drawn from at most ~1200 vertices per line (the chart is ~500 px wide): the
      // raw line keeps each bucket's min and max so spikes stay visible, the smoothed one every
      // bucket's first point.
      const size_t bucket = (n + 599) / 600;
      auto polyline = [&](const std::vector<double>& ys, bool minmax, const char* cls) {
        std::vector<size_t> idx;
        for (size_t b0 = 0; b0 < n; b0 += bucket) {
          const size_t b1 = std::min(n, b0 + bucket);
          if (!minmax || bucket == 1) {
            idx.push_back(b0);
            continue;
          }
          const auto [lo, hi] = std::minmax_element(ys.begin() + b0, ys.begin() + b1);
          const size_t a = size_t(lo - ys.begin()), b = size_t(hi - ys.begin());
          idx.push_back(std::min(a, b));
          if (a != b) idx.push_back(std::max(a, b));
        }
        if (idx.back() != n - 1) idx.push_back(n - 1);
        std::string pts;
        for (size_t k : idx) pts += fmt::format("{:.1f},{:.1f} ", X(double(s.pts[k].step)), Y(ys[k]));
        o += fmt::format("<polyline class=\"{}\" stroke=\"{}\" points=\"{}\"><title>{}</title></polyline>",
                         cls, color, pts, escape(s.key));
      };
      if (layer == 0 && n > 1) {
        std::vector<double> raw;
        for (const Point& p : s.pts) raw.push_back(p.value);
        polyline(raw, true, smooth ? "line raw" : "line");
      } else if (layer == 1 && smooth) {
        const double window = std::max(5.0, double(n) / 150.0);
        polyline(ema(s.pts, 1.0 - 1.0 / window), false, "line");
      } else if (layer == 2) {
        // A visible dot per point when there are few (sparse eval points stay readable);
        // otherwise invisible targets, at most ~250 of them, that still show the value on hover.
        const size_t stride = std::max<size_t>(1, (n + 249) / 250);
        const bool dots = n <= 60;
        for (size_t k = 0; k < n; k += stride) {
          const Point& p = s.pts[k];
          o += fmt::format(
              "<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\"><title>{} · step {}: "
              "{}</title>"
              "</circle>",
              dots ? "dot" : "hit", X(double(p.step)), Y(p.value), dots ? 3 : 4, color, escape(s.key), p.step,
              fmt_value(p.value));
        }
      }
    }
  }
  o += "</svg></div>\n";
  return o;
}

constexpr const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}h3{font-size:14px;margin:0 0 4px}
.meta{color:#666;font-size:13px;margin:0 0 12px}
.top{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;align-items:start}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:12px 14px}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:3px 8px;text-align:right;border-bottom:1px solid #eef0f2;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{color:#666;font-weight:600}
td.k{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{margin:0;font-size:12px;line-height:1.4;max-height:420px;overflow:auto;white-space:pre-wrap;word-break:break-word}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}
.chart{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:10px 12px 4px}
.legend{font-size:12px;color:#333;margin-bottom:2px;line-height:1.6}
.legend .item{margin-right:14px;white-space:nowrap}.legend b{font-weight:600}
.legend .num{color:#666;font-variant-numeric:tabular-nums}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
svg{width:100%;height:auto;display:block}
svg .grid{stroke:#eceef1;stroke-width:1}svg .axis{stroke:#9aa0a6;stroke-width:1}
svg .tick{font-size:11px;fill:#5f6368;font-variant-numeric:tabular-nums}svg .label{font-size:11px;fill:#5f6368}
svg .line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
svg .line.raw{stroke-width:1.2;stroke-opacity:.28}
svg .hit{fill-opacity:0}svg .hit:hover{fill-opacity:1}svg .dot:hover{r:4}
.empty{color:#666;font-style:italic}
footer{color:#888;font-size:12px;margin-top:24px}
)";

}  // namespace

std::string write_report(const std::string& run_dir) {
  const Metrics m = read_metrics(fs::join(run_dir, "metrics.jsonl"));
  const std::string cfg_path = fs::join(run_dir, "config.yaml");
  const std::string config = fs::exists(cfg_path) ? fs::read_file(cfg_path) : "";

  std::string name = run_dir;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  if (const size_t slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);

  // Charts: the known groups in order, then one chart per remaining key.
  std::vector<Chart> charts;
  std::vector<bool> taken(m.series.size(), false);
  for (const Group& g : groups()) {
    Chart c{g.title, {}};
    for (size_t i = 0; i < m.series.size(); ++i)
      if (!taken[i] && g.claims(m.series[i].key)) c.series.push_back(&m.series[i]), taken[i] = true;
    if (!c.series.empty()) charts.push_back(std::move(c));
  }
  for (size_t i = 0; i < m.series.size(); ++i)
    if (!taken[i]) charts.push_back({m.series[i].key, {&m.series[i]}});

  std::string o;
  o += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  o += fmt::format("<title>{} · r1.cpp run report</title><style>{}</style></head><body><main>\n",
                   escape(name), kStyle);
  o += fmt::format("<h1>Run: {}</h1>\n", escape(name));
  std::string meta;
  if (m.records > 0) {
    meta = fmt::format("steps {}–{} · {} records", m.first_step, m.last_step, m.records);
    if (m.first_time > 0 && m.last_time > 0)
      meta += fmt::format(" · started {} · last step {} ({} elapsed)", fmt_time(m.first_time),
                          fmt_time(m.last_time), fmt_duration(m.last_time - m.first_time));
  } else {
    meta = "no metrics recorded yet";
  }
  meta += fmt::format(" · report written {}", fmt_time(unix_time()));
  o += fmt::format("<p class=\"meta\">{}</p>\n", escape(meta));

  // Latest values next to the config.
  o += "<div class=\"top\"><div class=\"card\"><h3>Latest values</h3>";
  if (m.series.empty()) {
    o += "<p class=\"empty\">no metrics</p>";
  } else {
    o += "<table><tr><th>metric</th><th>last</th><th>at step</th><th>min</th><th>max</th></tr>";
    for (const Chart& c : charts)
      for (const Series* s : c.series) {
        const Stats st = stats(*s);
        o += fmt::format("<tr><td class=\"k\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                         escape(s->key), fmt_value(st.last), st.last_step, fmt_value(st.min),
                         fmt_value(st.max));
      }
    o += "</table>";
  }
  o += "</div><div class=\"card\"><h3>Config (config.yaml)</h3>";
  o += config.empty() ? "<p class=\"empty\">no config.yaml</p>" : "<pre>" + escape(config) + "</pre>";
  o += "</div></div>\n";

  o += "<h2>Curves</h2>\n";
  if (charts.empty()) o += "<p class=\"empty\">nothing to draw yet</p>\n";
  o += "<div class=\"charts\">\n";
  size_t color = 0;
  for (const Chart& c : charts) {
    o += render_chart(c, m.first_step, m.last_step, c.series.size() == 1 ? color++ : 0);
  }
  o += "</div>\n<footer>Drawn by r1.cpp from metrics.jsonl. Faint lines are raw values, solid lines an "
       "exponential moving average when a series has many points; hover a point for its value.</footer>\n";
  o += "</main></body></html>\n";

  const std::string out = fs::join(run_dir, "report.html");
  fs::write_file_atomic(out, o);
  return out;
}

}  // namespace r1::run
