/// The seeded generator lives in the engine (dropout and initialisation use it too); Data re-exports it.
@_exported import struct Engine.SplitMix64
@_exported import enum Engine.KitError
