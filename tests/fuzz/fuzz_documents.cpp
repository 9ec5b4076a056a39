// The text inputs of `prepare` (data/documents.cpp, text_reader.cpp): JSON lines and text,
// plain or zstd-compressed, read as records and turned into document text. Input: byte 0
// picks the kind (0 .jsonl, 1 .jsonl.zst, 2 text split at "---" lines, 3 .txt.zst whole),
// the rest is the file.
#include <optional>
#include <vector>

#include "data/documents.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int kind = data[0] % 4;
  static const char* names[] = {"in.jsonl", "in.jsonl.zst", "in.txt", "in.txt.zst"};
  const std::string path = tlfuzz::scratch(names[kind]);
  tlfuzz::write_file(path, data + 1, size - 1);
  const tl::InputFormat format = kind < 2 ? tl::InputFormat::Jsonl : tl::InputFormat::Text;
  tlfuzz::run([&] {
    const std::vector<tl::InputFile> files = {{path, format, uint64_t(size - 1)}};
    std::optional<std::string> sep;
    if (kind == 2) sep = "---";
    tl::RecordReader reader(files, sep, "content");
    tl::TextSelection sel;
    sel.set_path = {"meta", "redpajama_set_name"};
    sel.exclude_sets = {"RedPajamaGithub"};
    std::vector<tl::RawRecord> batch;
    bool more = true;
    while (more) {
      batch.clear();
      more = reader.next_batch(batch, 1 << 16, 64);
      for (auto& r : batch) {
        std::string set;
        (void)tl::extract_text(r, format, sel, &set);
      }
    }
    (void)reader.file_sha256(0);
  });
  return 0;
}
