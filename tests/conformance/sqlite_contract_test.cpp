// File: tests/conformance/sqlite_contract_test.cpp
//
// The store contract suite, through the synchronous and the asynchronous
// API, against SqliteStore: a fresh database file per
// test, in a scratch directory removed when the binary exits.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "conformance/store_contract.h"
#include "idem/stores/sqlite.h"

namespace {

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "idem-sqlite-contract-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string next_file() { return (path_ / ("t" + std::to_string(++count_) + ".db")).string(); }

 private:
  std::filesystem::path path_;
  int count_ = 0;
};

ScratchDir& scratch() {
  static ScratchDir dir;
  return dir;
}

StoreFixture sqlite_fixture() {
  return StoreFixture{"Sqlite", [] {
                        idem::SqliteStoreOptions options;
                        options.path = scratch().next_file();
                        return idem::SqliteStore::create(options).value();
                      }};
}

}  // namespace

INSTANTIATE_STORE_CONTRACT_BOTH_APIS(Sqlite, sqlite_fixture());
