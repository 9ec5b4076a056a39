// SIGINT/SIGTERM set a flag: the training loop finishes its step, saves and returns (exit
// 0). A second signal kills at once (the newest checkpoint stays valid: writes are atomic).
#pragma once

namespace tl {

// Also ignores SIGXFSZ (past a file-size limit a write fails with EFBIG: a clear error,
// the previous checkpoint intact) and SIGPIPE (a closed log pipe must not end a run).
void install_stop_signal_handlers();
bool stop_requested();

}  // namespace tl
