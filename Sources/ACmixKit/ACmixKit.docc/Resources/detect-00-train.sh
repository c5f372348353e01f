scripts/setup.sh
swift build -c release
.build/release/det-train
