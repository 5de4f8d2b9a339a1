// The files of a snapshot (docs/snapshot.rst): upstream's layout,
//   DEST/yokan-snapshot.json  {"yokan_snapshot_version": 1, "type", "db_config",
//                              "files": [names under data/], "format"}
//   DEST/data/...             the database
// where "format" (ours; upstream readers ignore it) says what data/ holds:
// "files" is a copy of the database directory, opened in place after a
// restore (rocksdb, lmdb); "dump" is the file data/dump, every pair as
// [u64 key size][key][u64 value size][value] in native byte order, the record
// layout upstream uses for its in-memory backends.
//
// Plus what a restore needs to know about where each backend type keeps its
// data (its "path" is a directory, a file, or nothing), so that the restored
// database lands under the new root and a detached source can be deleted.
//
// Errors: a Status, with `*error` saying what happened to which path.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "yokan/backend.hpp"

namespace yokan::snapshot {

constexpr const char* kManifest = "yokan-snapshot.json";
constexpr const char* kDumpFile = "dump";

struct Manifest {
  std::string type;
  json db_config;  // the backend's complete configuration when it was taken
  std::vector<std::string> files;
  std::string format;  // "files" or "dump"
};

// Writes DIR/yokan-snapshot.json (through a temporary file, then fsync).
Status write_manifest(const std::string& dir, const Manifest& m, std::string* error);
// Reads and checks it: INVALID_ARGS if missing, INVALID_CONFIG if malformed,
// CORRUPTION if a listed file is missing from DIR/data.
Status read_manifest(const std::string& dir, Manifest* m, std::string* error);

// Every pair of `backend` into `file` (created; fsynced if `sync`). The
// caller holds the writers back so that this is one consistent version.
Status write_dump(Backend& backend, const std::string& file, bool sync, std::string* error);
// fsync()s `file`.
Status sync_file(const std::string& file, std::string* error);
// Puts every pair of a dump into `backend`, in batches.
Status load_dump(Backend& backend, const std::string& file, std::string* error);

// Copies the tree `src` into `dst` (created). Regular files go through
// copy_file_range (no user-space copy; not fsynced: see copy_file); with
// `link_immutable`, files the
// library never rewrites (RocksDB's *.sst, *.blob) are hard-linked when on the
// same file system.
Status copy_tree(const std::string& src, const std::string& dst, bool link_immutable,
                 std::string* error);
// The regular files under `dir`, relative to it, sorted.
std::vector<std::string> list_files(const std::string& dir);
// Removes `path` (a file or a tree); missing is fine.
void remove_path(const std::string& path);
// True if `dir` does not exist or is an empty directory.
bool absent_or_empty(const std::string& dir);

// Drops `old` once no request uses it any more (bounded: the requests that
// pinned it are listings and counts, which end), then deletes `paths`.
void close_and_delete(std::shared_ptr<Backend> old, const std::vector<std::string>& paths);

// `config` of a `type` backend with its storage moved under `root`.
json relocate(const std::string& type, json config, const std::string& root);
// The files and directories that hold a `type` database opened with `config`
// (empty for in-memory backends).
std::vector<std::string> storage_paths(const std::string& type, const json& config);

}  // namespace yokan::snapshot
