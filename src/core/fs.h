// File helpers: whole-file reads, atomic writes (temp name, fsync, rename), listing.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tl {

std::string read_file(const std::string& path);  // throws naming the file
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
uint64_t file_size(const std::string& path);
void make_dirs(const std::string& path);

// Whether `name`, read from an index file (a checkpoint's meta.json, an HF weight index),
// names a file directly inside that index's folder: not empty, "." or "..", and without
// '/' (absolute paths, "../" escapes, subfolders) or NUL. Callers refuse anything else.
bool is_plain_file_name(const std::string& name);

// Writes through `write(FILE*)` into path + ".tmp.<pid>", fsyncs, renames over path and
// fsyncs the folder: readers see the old file or the complete new one, never a part.
// Throws naming the file, or the folder when its fsync fails.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write);
void write_file_atomic(const std::string& path, const std::string& contents);

// fsync of a folder (after a rename or create in it); throws naming the folder. EINVAL
// (a filesystem that cannot sync folders, e.g. some FUSE mounts) is not an error: such a
// filesystem offers no folder durability to ask for.
void sync_dir(const std::string& dir);

// Checked fwrite: throws naming the path (disk full, I/O error).
void write_all(std::FILE* f, const void* data, size_t n, const std::string& path_for_errors);

// Regular files directly inside dir whose names end with suffix, sorted by name.
std::vector<std::string> list_files(const std::string& dir, const std::string& suffix);

}  // namespace tl
