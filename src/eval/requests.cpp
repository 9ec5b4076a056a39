#include "eval/requests.h"

#include "core/error.h"
#include "eval/text.h"

namespace tl::eval {

EncodedPair encode_pair(const Tokenizer& tok, const std::string& context,
                        const std::string& continuation, BosMode bos) {
  EncodedPair out;
  auto enc = [&](const std::string& s) {
    std::vector<int32_t> ids;
    if (bos == BosMode::On) ids.push_back(tok.bos_id());
    for (int id : tok.encode(s)) ids.push_back(id);
    return ids;
  };
  if (context.empty()) {           // the harness conditions on its prefix token alone, and encodes
    out.context = {tok.bos_id()};  // the continuation alone (with BOS in On mode)
    out.continuation = enc(continuation);
    return out;
  }
  const std::string ctx = py_rstrip(context);
  const std::string cont = context.substr(ctx.size()) + continuation;
  const std::vector<int32_t> whole = enc(ctx + cont);
  out.context = enc(ctx);
  // The harness slices by count without checking that the context's tokens are a prefix
  // of the whole's; so do we.
  if (whole.size() > out.context.size())
    out.continuation.assign(whole.begin() + std::ptrdiff_t(out.context.size()), whole.end());
  return out;
}

TokenRequest make_request(const EncodedPair& pair, int window, const std::string& where) {
  const size_t contlen = pair.continuation.size();
  TL_CHECK(contlen > 0, where, ": the continuation encodes to no token");
  TL_CHECK(!pair.context.empty(), where, ": the context encodes to no token (a context of ",
           "whitespace only, without BOS)");
  TL_CHECK(contlen <= size_t(window), where, ": the continuation has ", contlen,
           " tokens, more than the model's window of ", window);
  TokenRequest r;
  r.contlen = int(contlen);
  const size_t total = pair.context.size() + contlen, keep = size_t(window) + 1;
  const size_t skip = total > keep ? total - keep : 0;
  r.truncated = skip > 0;
  r.tokens.reserve(total - skip);
  for (size_t i = skip; i < pair.context.size(); ++i) r.tokens.push_back(pair.context[i]);
  const size_t cskip = skip > pair.context.size() ? skip - pair.context.size() : 0;
  r.tokens.insert(r.tokens.end(), pair.continuation.begin() + std::ptrdiff_t(cskip),
                  pair.continuation.end());
  return r;
}

}  // namespace tl::eval
