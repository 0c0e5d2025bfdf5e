#include "pipeline/pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
// yaml-cpp 0.7's iterator proxies trip GCC 12's flow analysis (false positives, as in recipe.cpp).
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/timer.h"
#include "pipeline/pipeline_stages.h"

namespace r1::pipeline {

namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

struct Setting {
  std::string key, value;  // value as written, ${NAME} unresolved
  std::string where;       // "FILE line N" or "override 'K=V'"
};

struct StageSpec {
  std::string name, kind, recipe_file, where;
  std::vector<Setting> set;
};

struct PipelineSpec {
  std::string path, dir, device;
  std::vector<StageSpec> stages;
};

std::string at_line(const std::string& path, const YAML::Node& n) {
  return fmt::format("{} line {}", path, n.Mark().line + 1);
}

// A YAML value as the text Recipe::set parses: scalars verbatim, sequences as a flow list.
std::string setting_text(const YAML::Node& v, const std::string& where) {
  if (v.IsScalar()) return v.Scalar();
  if (v.IsNull()) return "";
  R1_CHECK(v.IsSequence(), "{}: expected a value or a list, got a mapping", where);
  std::vector<std::string> items;
  for (const auto& e : v) {
    R1_CHECK(e.IsScalar(), "{}: list items must be plain values", where);
    items.push_back(e.Scalar());
  }
  return fmt::format("[{}]", fmt::join(items, ", "));
}

void flatten(const YAML::Node& map, const std::string& prefix, const std::string& path, std::vector<Setting>& out) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string where = at_line(path, it->first);
    R1_CHECK(it->first.IsScalar(), "{}: keys must be plain names", where);
    const std::string key = prefix.empty() ? it->first.Scalar() : prefix + "." + it->first.Scalar();
    if (it->second.IsMap()) flatten(it->second, key, path, out);
    else out.push_back({key, setting_text(it->second, where), where});
  }
}

PipelineSpec parse(const std::string& path) {
  R1_CHECK(fs::exists(path), "pipeline recipe {} does not exist", path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("{} line {}: YAML syntax error: {}", path, e.mark.line + 1, e.msg);
  }
  R1_CHECK(root.IsMap(), "{}: a pipeline recipe is a mapping with dir, device and stages", path);
  PipelineSpec p;
  p.path = path;
  p.dir = "runs/pipeline";
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar(), where = at_line(path, it->first);
    if (key == "dir") p.dir = it->second.Scalar();
    else if (key == "device") p.device = it->second.Scalar();
    else if (key == "stages") {
      R1_CHECK(it->second.IsSequence(), "{}: 'stages' must be a list of stages", where);
      for (const auto& s : it->second) {
        const std::string swhere = at_line(path, s);
        R1_CHECK(s.IsMap(), "{}: a stage is a mapping with name, kind, recipe and set", swhere);
        StageSpec st;
        st.where = swhere;
        for (auto f = s.begin(); f != s.end(); ++f) {
          const std::string fk = f->first.Scalar(), fwhere = at_line(path, f->first);
          if (fk == "name") st.name = f->second.Scalar();
          else if (fk == "kind") st.kind = f->second.Scalar();
          else if (fk == "recipe") st.recipe_file = f->second.Scalar();
          else if (fk == "set") {
            R1_CHECK(f->second.IsMap() || f->second.IsNull(), "{}: 'set' must be a mapping of recipe keys", fwhere);
            if (f->second.IsMap()) flatten(f->second, "", path, st.set);
          } else {
            fail("{}: unknown stage field '{}' (name, kind, recipe, set)", fwhere, fk);
          }
        }
        R1_CHECK(!st.name.empty(), "{}: the stage has no name", swhere);
        R1_CHECK(st.name != "dir" && st.name.find_first_of("/.${} ") == std::string::npos,
                 "{}: stage name '{}' must be a plain word (no '/', '.', spaces; not 'dir')", swhere, st.name);
        for (const auto& other : p.stages)
          R1_CHECK(other.name != st.name, "{}: two stages are named '{}'", swhere, st.name);
        R1_CHECK(!st.kind.empty(), "{}: stage '{}' has no kind", swhere, st.name);
        stage_kind(st.kind);  // an unknown kind fails here, naming the kinds
        p.stages.push_back(std::move(st));
      }
    } else {
      fail("{}: unknown key '{}' (dir, device, stages)", where, key);
    }
  }
  R1_CHECK(!p.stages.empty(), "{}: the pipeline has no stages", path);
  return p;
}

void apply_overrides(PipelineSpec& p, const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    R1_CHECK(eq != std::string::npos, "override '{}': expected KEY=VALUE", o);
    const std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    if (key == "dir") p.dir = value;
    else if (key == "device") p.device = value;
    else {
      const size_t dot = key.find('.');
      R1_CHECK(dot != std::string::npos, "override '{}': expected dir=, device= or STAGE.key=value", o);
      const std::string stage = key.substr(0, dot);
      auto it = std::find_if(p.stages.begin(), p.stages.end(), [&](const StageSpec& s) { return s.name == stage; });
      R1_CHECK(it != p.stages.end(), "override '{}': no stage named '{}'", o, stage);
      it->set.push_back({key.substr(dot + 1), value, "override '" + o + "'"});
    }
  }
}

// ${NAME} -> the directory of earlier stage NAME (or the pipeline directory for ${dir}); the stages
// a value refers to are collected in `refs`.
std::string resolve(const std::string& value, const Setting& s, const PipelineSpec& p, size_t stage,
                    std::set<std::string>& refs) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = value.find("${", pos);
    if (open == std::string::npos) break;
    const size_t close = value.find('}', open);
    R1_CHECK(close != std::string::npos, "{}: '{}' has an unclosed '${{'", s.where, value);
    const std::string name = value.substr(open + 2, close - open - 2);
    out += value.substr(pos, open - pos);
    if (name == "dir") {
      out += p.dir;
    } else {
      bool earlier = false;
      for (size_t i = 0; i < stage; ++i) earlier |= p.stages[i].name == name;
      if (!earlier) {
        std::vector<std::string> names;
        for (size_t i = 0; i < stage; ++i) names.push_back(p.stages[i].name);
        fail("{}: stage '{}' key '{}' refers to ${{{}}}, which is not an earlier stage (earlier: {})", s.where,
             p.stages[stage].name, s.key, name, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")));
      }
      out += fs::join(p.dir, name);
      refs.insert(name);
    }
    pos = close + 1;
  }
  return out + value.substr(pos);
}

struct Planned {
  const StageKind* kind = nullptr;
  std::unique_ptr<run::Recipe> recipe;
  std::string dir, hash;
  std::vector<std::pair<const Setting*, std::string>> inputs;  // settings naming earlier stages' files
  std::set<std::string> refs;
};

// FNV-1a: a stable fingerprint of a stage's settings (std::hash may differ between builds).
std::string fingerprint(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

std::vector<Planned> plan(const PipelineSpec& p) {
  std::vector<Planned> out;
  std::map<std::string, std::string> hash_of;
  const std::string base = stdfs::path(p.path).parent_path().string();
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StageSpec& st = p.stages[i];
    Planned pl;
    pl.kind = &stage_kind(st.kind);
    pl.recipe = std::make_unique<run::Recipe>(pl.kind->defaults());
    pl.dir = fs::join(p.dir, st.name);
    run::Recipe& r = *pl.recipe;
    if (!st.recipe_file.empty()) {
      const std::string local = base.empty() ? st.recipe_file : fs::join(base, st.recipe_file);
      r.load_yaml(fs::exists(local) ? local : st.recipe_file);
    }
    if (!p.device.empty() && r.has("device")) r.set("device=" + p.device);
    for (const Setting& s : st.set) {
      R1_CHECK(s.key != "run.dir" && s.key != "run.name", "{}: stage '{}' sets {}, which the pipeline sets (dir/{})",
               s.where, st.name, s.key, st.name);
      const std::string value = resolve(s.value, s, p, i, pl.refs);
      if (value != s.value) pl.inputs.push_back({&s, value});
      try {
        r.set(s.key + "=" + value);
      } catch (const Error& e) {
        fail("{}: stage '{}' ({}): {}", s.where, st.name, st.kind, e.what());
      }
    }
    r.set("run.dir=" + p.dir);
    r.set("run.name=" + st.name);
    // A stage's fingerprint covers its settings and those of every stage it reads, so a change
    // upstream makes it run again.
    std::string text = st.kind + "\n" + r.to_yaml();
    for (const std::string& ref : pl.refs) text += ref + "=" + hash_of.at(ref) + "\n";
    pl.hash = fingerprint(text);
    hash_of[st.name] = pl.hash;
    out.push_back(std::move(pl));
  }
  return out;
}

json read_json(const std::string& path) {
  try {
    return json::parse(fs::read_file(path));
  } catch (const json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

void check_inputs(const StageSpec& st, const Planned& pl) {
  for (const auto& [s, path] : pl.inputs) {
    if (fs::exists(path)) continue;
    std::string from;
    for (const std::string& ref : pl.refs)
      if (path.rfind(fs::join(stdfs::path(pl.dir).parent_path().string(), ref), 0) == 0) from = ref;
    fail("{}: stage '{}' input {} = {} does not exist yet{}", s->where, st.name, s->key, path,
         from.empty() ? "" : fmt::format(" (stage '{}' finished without writing it: check the name)", from));
  }
}

void print_table(const std::vector<StageRecord>& records) {
  fmt::print("\n{:<16} {:<9} {:<8} {:>8}  {}\n", "stage", "kind", "status", "seconds", "result");
  for (const auto& r : records) {
    std::string result;
    if (r.summary.is_object())
      for (auto& [k, v] : r.summary.items())
        if (v.is_number() && result.size() < 90) result += fmt::format("{}={} ", k, v.is_number_float() ? fmt::format("{:.4g}", v.get<double>()) : v.dump());
    fmt::print("{:<16} {:<9} {:<8} {:>8.1f}  {}\n", r.name, r.kind, r.status, r.seconds, result);
  }
}

}  // namespace

std::vector<StageRecord> run_pipeline(const std::string& recipe_path, const PipelineOptions& opts) {
  PipelineSpec p = parse(recipe_path);
  apply_overrides(p, opts.overrides);
  std::string stop_stage;
  int64_t stop_step = -1;
  if (!opts.stop_in.empty()) {
    const size_t colon = opts.stop_in.find(':');
    R1_CHECK(colon != std::string::npos, "--stop-in expects STAGE:STEP, got '{}'", opts.stop_in);
    stop_stage = opts.stop_in.substr(0, colon);
    stop_step = std::stoll(opts.stop_in.substr(colon + 1));
  }
  // Every stage's recipe is built (and so checked) before anything runs.
  std::vector<Planned> planned = plan(p);
  std::vector<StageRecord> records;
  std::set<std::string> rerun;  // stages run in this invocation: what reads them must run too
  for (size_t i = 0; i < p.stages.size(); ++i) {
    const StageSpec& st = p.stages[i];
    Planned& pl = planned[i];
    StageRecord rec{st.name, st.kind, "", 0, nullptr};
    const std::string done_file = fs::join(pl.dir, "stage_done.json"), start_file = fs::join(pl.dir, "stage_started.json");
    bool upstream_ran = false;
    for (const std::string& ref : pl.refs) upstream_ran |= rerun.count(ref) > 0;
    const bool done = !upstream_ran && fs::exists(done_file) && read_json(done_file).value("hash", "") == pl.hash;
    const bool resumable = !done && fs::exists(start_file) && read_json(start_file).value("hash", "") == pl.hash &&
                           pl.kind->can_resume(pl.dir);
    if (done) {
      json d = read_json(done_file);
      rec.status = "skipped";
      rec.seconds = d.value("seconds", 0.0);
      rec.summary = d.value("summary", json());
      log::info("pipeline: stage {}/{} '{}' ({}) finished earlier with these settings: skipped", i + 1,
                p.stages.size(), st.name, st.kind);
      records.push_back(rec);
      continue;
    }
    rec.status = resumable ? "resumed" : "ran";
    if (opts.dry_run) {
      rec.status = resumable ? "resume" : "run";
      fmt::print("# stage {} '{}' ({}): would {}\n{}\n", i + 1, st.name, st.kind, rec.status, pl.recipe->to_yaml());
      records.push_back(rec);
      rerun.insert(st.name);
      continue;
    }
    check_inputs(st, pl);
    if (!resumable && fs::exists(pl.dir)) {
      // Another run's output (other settings, or interrupted with nothing to resume): start clean,
      // so nothing stale (checkpoints of later steps, old samples) mixes into this run.
      log::info("pipeline: stage '{}': removing the earlier output in {} (settings changed or nothing to resume)",
                st.name, pl.dir);
      stdfs::remove_all(pl.dir);
    }
    stdfs::create_directories(pl.dir);
    fs::write_file_atomic(start_file, json{{"hash", pl.hash}}.dump() + "\n");
    log::info("pipeline: stage {}/{} '{}' ({}){}", i + 1, p.stages.size(), st.name, st.kind,
              resumable ? ": resuming the interrupted run" : "");
    Timer t;
    run::RunOptions ro;
    ro.resume = resumable;
    if (st.name == stop_stage) ro.stop_after = stop_step;
    pl.kind->run(*pl.recipe, ro);
    rec.seconds = t.seconds();
    rec.summary = fs::exists(fs::join(pl.dir, "summary.json")) ? run::read_summary(pl.dir) : json();
    fs::write_file_atomic(done_file,
                          json{{"hash", pl.hash}, {"kind", st.kind}, {"seconds", rec.seconds}, {"summary", rec.summary}}
                                  .dump(2) + "\n");
    rerun.insert(st.name);
    records.push_back(rec);
  }
  if (opts.dry_run) return records;
  json all = json::array();
  for (const auto& r : records)
    all.push_back({{"name", r.name}, {"kind", r.kind}, {"status", r.status}, {"seconds", r.seconds}, {"summary", r.summary}});
  fs::write_file_atomic(fs::join(p.dir, "pipeline.json"), json{{"recipe", recipe_path}, {"stages", all}}.dump(2) + "\n");
  print_table(records);
  return records;
}

}  // namespace r1::pipeline
