// Building a request body from borrowed pieces.
#pragma once

#include <vector>

#include "yokan/engine.hpp"

namespace yokan {

// Adds `piece` to `body`, extending the last segment when the piece follows
// it in memory (a packed buffer of keys or values then stays one segment
// instead of one per item); empty pieces add nothing. The body is one byte
// stream on the wire either way. The client calls this as it encodes a
// request, so it never builds an entry per item; the engine calls it again
// on whatever body it is given.
inline void append_segment(std::vector<Segment>& body, Segment piece) {
  if (piece.size == 0) return;
  if (!body.empty()) {
    Segment& last = body.back();
    if (static_cast<const char*>(last.data) + last.size == piece.data) {
      last.size += piece.size;
      return;
    }
  }
  body.push_back(piece);
}

}  // namespace yokan
