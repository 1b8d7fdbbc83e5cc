// File: fuzz/scratch_dir.h
//
// ScratchDir is a private temporary directory for fuzz targets that make
// files (SQLite databases), removed with its contents on destruction.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace idem::fuzz {

class ScratchDir {
 public:
  // `tag` names the directory: <root>/idem-fuzz-<tag>-XXXXXX. The root is
  // /dev/shm when TMPDIR is unset and it is writable: SQLite syncs its files,
  // and on a disk that made runs about forty times slower.
  explicit ScratchDir(const std::string& tag) {
    std::error_code ec;
    std::filesystem::path root = std::filesystem::temp_directory_path();
    if (std::getenv("TMPDIR") == nullptr && std::filesystem::is_directory("/dev/shm", ec) &&
        ::access("/dev/shm", W_OK) == 0) {
      root = "/dev/shm";
    }
    std::string pattern = (root / ("idem-fuzz-" + tag + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // clear() empties the directory between inputs so that files do not pile up.
  void clear() const {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ignored)) {
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }

 private:
  std::filesystem::path path_;
};

}  // namespace idem::fuzz
