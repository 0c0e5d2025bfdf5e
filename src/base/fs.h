#pragma once
// File helpers. Outputs are written to a temporary name and renamed into place, so a crash or an
// error never leaves a half-written checkpoint or result behind.
#include <string>
#include <string_view>

namespace r1::fs {

std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, std::string_view bytes);
bool exists(const std::string& path);
// Joins a directory and a file name with one '/'.
std::string join(const std::string& dir, const std::string& name);

}  // namespace r1::fs
