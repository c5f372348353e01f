extern "C" int csimdjson_placeholder() { return 0; }
