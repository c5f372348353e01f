// Heads
