// A reference loss file for `tinyllama report --reference` (observe/report_reference.cpp):
// CSV or jsonl, read, then compared with a small run's curves and tabled.
#include "fuzz_util.h"
#include "observe/report_reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tlfuzz::run([&] {
    const std::string path = tlfuzz::scratch("reference.txt");
    tlfuzz::write_file(path, data, size);
    const tl::LossCurves ref = tl::read_reference(path);
    tl::LossCurves run;
    for (int s = 1; s <= 8; ++s) run.train.push_back({double(s), 64.0 * s, 4 - 0.1 * s});
    run.val = {{0, 0, 4.5}, {8, 512, 3.3}};
    const tl::Comparison c = tl::compare_curves(run, ref);
    (void)tl::reference_x(ref.train, c);
    (void)tl::format_table(tl::comparison_table(c.train, "train", "ref", 10));
  });
  return 0;
}
