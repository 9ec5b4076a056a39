// kernel_timeline: a library preloaded into any CUDA process (LD_PRELOAD) that records every
// kernel it runs, graph-replayed ones included, and every copy and memset, through CUPTI's
// activity API, and writes one CSV line each to $TL_TIMELINE_OUT:
//   start_ns,end_ns,correlation,graph_id,graph_node,stream,grid,block,registers,name
// (correlation: the launch call's id, which every kernel of one graph replay shares; a copy
// or memset has grid 0 and a name such as "memcpy HtoD 16 B", so that what runs between two
// graph replays shows).
// Why: Nsight Compute runs kernels one at a time, so it cannot show how a decode step's ~112
// kernels overlap under programmatic dependent launch, and the GPU machines have no Nsight
// Systems. CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL keeps kernels concurrent; its timestamps
// cost ~1 us a kernel, so absolute step times run a little long.
//   tools/gpu/build_timeline.sh builds it; bench/decode_timeline.sh runs and summarizes it.
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

FILE* g_out = nullptr;
std::mutex g_mu;
constexpr size_t kBufferBytes = 4u << 20;

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  std::fprintf(stderr, "kernel_timeline: %s failed: %s\n", what, msg ? msg : "?");
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = kBufferBytes;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(g_mu);
  CUpti_Activity* rec = nullptr;
  while (g_out && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
      static const char* const kinds[] = {"?", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA",
                                          "AtoD", "DtoA", "DtoD", "HtoH", "PtoP"};
      const char* kind = m->copyKind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[m->copyKind] : "?";
      std::fprintf(g_out, "%llu,%llu,%u,%u,%llu,%u,0,0,0,memcpy %s %llu B\n",
                   (unsigned long long)m->start, (unsigned long long)m->end, m->correlationId,
                   m->graphId, (unsigned long long)m->graphNodeId, m->streamId, kind,
                   (unsigned long long)m->bytes);
      continue;
    }
    if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
      std::fprintf(g_out, "%llu,%llu,%u,%u,%llu,%u,0,0,0,memset %llu B\n",
                   (unsigned long long)m->start, (unsigned long long)m->end, m->correlationId,
                   m->graphId, (unsigned long long)m->graphNodeId, m->streamId,
                   (unsigned long long)m->bytes);
      continue;
    }
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    std::fprintf(g_out, "%llu,%llu,%u,%u,%llu,%u,%d,%d,%u,%s\n", (unsigned long long)k->start,
                 (unsigned long long)k->end, k->correlationId, k->graphId,
                 (unsigned long long)k->graphNodeId, k->streamId, k->gridX * k->gridY * k->gridZ,
                 k->blockX * k->blockY * k->blockZ, unsigned(k->registersPerThread),
                 k->name ? k->name : "?");
  }
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS && dropped)
    std::fprintf(stderr, "kernel_timeline: %zu records dropped\n", dropped);
  std::free(buffer);
  if (g_out) std::fflush(g_out);
}

// Records still buffered are delivered before a context goes (the process's last chance when
// the runtime tears down before this library's exit handler).
void CUPTIAPI on_resource(void*, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                          const void*) {
  if (domain == CUPTI_CB_DOMAIN_RESOURCE && cbid == CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING)
    cuptiActivityFlushAll(0);
}

void at_exit() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_out) std::fclose(g_out);
  g_out = nullptr;
}

__attribute__((constructor)) void start() {
  const char* path = std::getenv("TL_TIMELINE_OUT");
  if (!path || !*path) return;
  g_out = std::fopen(path, "w");
  if (!g_out) {
    std::fprintf(stderr, "kernel_timeline: cannot write %s\n", path);
    return;
  }
  std::fprintf(g_out,
               "start_ns,end_ns,correlation,graph_id,graph_node,stream,grid,block,registers,"
               "name\n");
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "register");
  CUpti_SubscriberHandle sub;
  check(cuptiSubscribe(&sub, on_resource, nullptr), "subscribe");
  check(cuptiEnableCallback(1, sub, CUPTI_CB_DOMAIN_RESOURCE,
                            CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING),
        "context callback");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable kernels");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "enable copies");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET), "enable memsets");
  check(cuptiActivityFlushPeriod(200), "flush period");
  std::atexit(at_exit);
}

}  // namespace
