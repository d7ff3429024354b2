//! Which peer addresses a client may relay to. (Being written.)
