#!/usr/bin/python3
"""Example: read an fmps model.fmps in Python and score libsvm or libffm rows with it.

Usage:
  /usr/bin/python3 launch/model_reader.py PB_DIR MODEL.fmps DATA [--limit N]

PB_DIR holds fmps_pb2.py, generated from common/proto/fmps.proto (launch/setup.sh does this):
  protoc -Icommon/proto --python_out=build/python common/proto/fmps.proto

Prints one line per row of DATA: the probability (logistic loss) or the score (squared
loss), like `fmps predict`. The FM score is
  w0 + sum_i w_i x_i + 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2];
keys absent from the model contribute nothing. A field-aware model (model.kind ffm: header
kind 1 and its number of fields F; each key's row is w, then F vectors of k floats, the one
for field f at 1 + f*k) scores
  w0 + sum_i w_i x_i + sum_{i<j} <v_{i,field(j)}, v_{j,field(i)}> x_i x_j.
A model trained with `data.normalize: instance` (the default) first scales each row's values
to unit L2 norm, over all of its features, as fmps's readers do.
Only libsvm and libffm models with hash_bits 0 (keys are the feature ids) are handled
(DATA in the model's format): this is an example of the file format, not a second
implementation of fmps's readers and hashing.

Needs google.protobuf: run it with Debian's python3 (/usr/bin/python3) and python3-protobuf.
Without google.protobuf it stops with one line saying so.

As a module (put launch/ on sys.path):
  model = model_reader.load_model(PB_DIR, "model.fmps")
  for p in model_reader.predict_rows(model, model_reader.libsvm_rows("data.libsvm")): ...
  (model_reader.data_rows(model, path) reads the model's format: libsvm or libffm rows)
Errors raise ModelReaderError (main() prints it on one line and exits 1).
"""

import argparse
import array
import math
import os
import re
import struct
import sys

MAGIC = b"FMPSMDL1"


class ModelReaderError(Exception):
    """A model or data file this reader cannot use, or a missing module; one line."""


def fail(message):
    raise ModelReaderError(message)


def import_pb(pb_dir):
    """The fmps_pb2 module generated into pb_dir."""
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        fail(f"google.protobuf is not installed for {sys.executable}; run this with Debian's "
             "/usr/bin/python3 and python3-protobuf (apt-get install python3-protobuf)")
    if pb_dir not in sys.path:
        sys.path.insert(0, pb_dir)
    try:
        import fmps_pb2
    except ImportError as e:
        fail(f"cannot import fmps_pb2 from {pb_dir} ({e}); generate it with: "
             f"protoc -Icommon/proto --python_out={pb_dir} common/proto/fmps.proto")
    return fmps_pb2


def records(path):
    """Yields the serialized records of a model file (after the magic)."""
    with open(path, "rb") as f:
        if f.read(8) != MAGIC:
            fail(f"{path}: not an fmps model file (bad magic)")
        while True:
            head = f.read(4)
            if not head:
                return
            if len(head) != 4:
                fail(f"{path}: truncated model file")
            (n,) = struct.unpack("<I", head)
            body = f.read(n)
            if len(body) != n:
                fail(f"{path}: truncated model file")
            yield body


def little_endian(typecode, data):
    a = array.array(typecode)
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def yaml_scalar(data_yaml, key):
    """The value of `key:` in the header's small `data:` YAML section (no YAML library)."""
    m = re.search(rf"^\s*{key}:\s*(\S+)\s*$", data_yaml, re.MULTILINE)
    return m.group(1) if m else None


def xxh3_state():
    """A running XXH3-64 hash: the python xxhash module, else libxxhash (fmps's own dependency)
    through ctypes. Returns (update(bytes), digest() -> int)."""
    try:
        import xxhash
        h = xxhash.xxh3_64()
        return h.update, h.intdigest
    except ImportError:
        pass
    import ctypes
    import ctypes.util
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    except OSError:
        fail("cannot verify model checksums: needs libxxhash (Debian: apt-get install libxxhash0)")
    lib.XXH3_createState.restype = ctypes.c_void_p
    lib.XXH3_64bits_reset.argtypes = [ctypes.c_void_p]
    lib.XXH3_64bits_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.XXH3_64bits_digest.argtypes = [ctypes.c_void_p]
    lib.XXH3_64bits_digest.restype = ctypes.c_uint64
    state = lib.XXH3_createState()
    lib.XXH3_64bits_reset(state)
    return (lambda data: lib.XXH3_64bits_update(state, data, len(data)),
            lambda: lib.XXH3_64bits_digest(state))


def verify_checksum(pb, path):
    """Refuses a damaged model file: from version 2 its final record (no keys, last = true)
    carries the XXH3-64 of every byte before it and nothing follows. Version-1 files (written
    before the checksum) are accepted with a warning, as fmps does. This reads the file once
    more before Model parses it: simple, and cheap for an example script."""
    update, digest = xxh3_state()
    update(MAGIC)
    version = None
    chunk = pb.ModelChunk()
    recs = records(path)
    for body in recs:
        before = digest()
        update(struct.pack("<I", len(body)))
        update(body)
        if version is None:
            header = pb.ModelHeader()
            header.ParseFromString(body)
            version = header.version
            continue
        chunk.ParseFromString(body)
        if not chunk.last:
            continue
        if version == 1 and chunk.checksum == 0:
            print(f"model_reader: warning: {path}: model file written before model files carried "
                  "a checksum (version 1): loaded without verification", file=sys.stderr)
            return
        if chunk.keys or chunk.checksum != before or chunk.SerializeToString() != body:
            fail(f"{path}: damaged model file (checksum mismatch)")
        if next(recs, None) is not None:
            fail(f"{path}: damaged model file (bytes after the final record)")
        return
    fail(f"{path}: truncated model file (no final record)")


class Model:
    def __init__(self, pb, path):
        verify_checksum(pb, path)
        recs = records(path)
        header = pb.ModelHeader()
        header.ParseFromString(next(recs, b""))
        if header.version not in (1, 2):
            fail(f"{path}: unsupported model version {header.version}")
        fmt = yaml_scalar(header.data_yaml, "format")
        hash_bits = yaml_scalar(header.data_yaml, "hash_bits")
        if fmt not in ("libsvm", "libffm") or hash_bits != "0":
            fail(f"{path}: format {fmt}, hash_bits {hash_bits}: this example only handles "
                 "libsvm and libffm models with hash_bits 0")
        if header.kind not in (0, 1):
            fail(f"{path}: unknown model kind {header.kind}")
        self.format = fmt
        # absent (models written before the key existed): none
        self.normalize = yaml_scalar(header.data_yaml, "normalize") == "instance"
        self.k = header.k
        self.fields = header.fields if header.kind == 1 else 0  # 0: FM
        self.loss = header.loss
        self.bias = header.bias
        self.width = 1 + self.k * max(self.fields, 1)
        self.params = array.array("f")  # (w, v_1 .. v_k) of each key, in file order
        self.index = {}                  # key -> its row in params
        chunk = pb.ModelChunk()
        last = False
        for rec in recs:
            chunk.ParseFromString(rec)
            keys = little_endian("Q", chunk.keys)
            params = little_endian("f", chunk.params)
            if len(params) != len(keys) * self.width:
                fail(f"{path}: model chunk sizes do not match")
            base = len(self.index)
            self.index.update(zip(keys, range(base, base + len(keys))))
            self.params.extend(params)
            last = chunk.last
            if last:
                break
        if not last:
            fail(f"{path}: truncated model file (no last chunk)")
        if len(self.index) != header.num_keys or len(self.params) != header.num_keys * self.width:
            fail(f"{path}: {len(self.index)} distinct keys, header says {header.num_keys}")

    def score(self, features):
        """FM (or FFM) score of [(key, value), ...] or [(key, value, field), ...] (values
        scaled to unit norm under normalize: instance)."""
        if self.normalize:
            norm = math.sqrt(sum(f[1] * f[1] for f in features))
            if norm > 0:
                features = [(f[0], f[1] / norm, *f[2:]) for f in features]
        if self.fields:
            return self.ffm_score(features)
        s = self.bias
        sum_v = [0.0] * self.k
        sum_v2 = [0.0] * self.k
        p = self.params
        for key, x, *_ in features:
            i = self.index.get(key)
            if i is None:
                continue
            at = i * self.width
            s += p[at] * x
            for f in range(self.k):
                vx = p[at + 1 + f] * x
                sum_v[f] += vx
                sum_v2[f] += vx * vx
        return s + 0.5 * sum(a * a - b for a, b in zip(sum_v, sum_v2))

    def ffm_score(self, features):
        """FFM score of [(key, value, field), ...]: pairs <v_{i,f_j}, v_{j,f_i}> x_i x_j."""
        s = self.bias
        p, k = self.params, self.k
        known = []  # (row offset, value, field) of the keys in the model
        for key, x, field in features:
            if field >= self.fields:
                fail(f"field {field} out of range (the model has {self.fields} fields)")
            i = self.index.get(key)
            if i is not None:
                known.append((i * self.width, x, field))
        for a, (at_i, xi, fi) in enumerate(known):
            s += p[at_i] * xi
            for at_j, xj, fj in known[a + 1:]:
                vi = at_i + 1 + fj * k
                vj = at_j + 1 + fi * k
                s += sum(p[vi + q] * p[vj + q] for q in range(k)) * xi * xj
        return s

    def predict(self, score):
        if self.loss != "logistic":
            return score
        if score >= 0:
            return 1.0 / (1.0 + math.exp(-score))
        e = math.exp(score)
        return e / (1.0 + e)


def load_model(pb_dir, path):
    """Reads model file `path` with the fmps_pb2 module of pb_dir; returns a Model."""
    pb = import_pb(pb_dir)
    from google.protobuf.message import DecodeError
    try:
        return Model(pb, path)
    except DecodeError:
        fail(f"{path}: corrupt model record")


def predict_rows(model, rows):
    """Yields model.predict(model.score(features)) for each row of features."""
    for features in rows:
        yield model.predict(model.score(features))


def sparse_rows(path, limit, feature):
    """Yields [feature(token), ...] for each non-blank row of `path` (label first, unused)."""
    done = 0
    with open(path, "r", encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            if limit is not None and done >= limit:
                return
            try:
                float(tokens[0])  # label (unused here)
                features = [feature(tok) for tok in tokens[1:]]
            except ValueError:
                fail(f"{path}:{line_number}: bad row")
            done += 1
            yield features


def libsvm_rows(path, limit=None):
    """Yields the features of each non-blank row: [(id, value), ...]."""
    def feature(tok):
        key, value = tok.split(":")
        return int(key), float(value)
    return sparse_rows(path, limit, feature)


def libffm_rows(path, limit=None):
    """Yields the features of each non-blank libffm row: [(id, value, field), ...]."""
    def feature(tok):
        field, key, value = tok.split(":")
        return int(key), float(value), int(field)
    return sparse_rows(path, limit, feature)


def data_rows(model, path, limit=None):
    """The rows of `path` in the model's format (libsvm or libffm)."""
    return (libffm_rows if model.format == "libffm" else libsvm_rows)(path, limit)


def main():
    parser = argparse.ArgumentParser(description="Score libsvm or libffm rows with an fmps model.")
    parser.add_argument("pb_dir", help="directory holding fmps_pb2.py")
    parser.add_argument("model", help="model.fmps")
    parser.add_argument("data", help="libsvm or libffm file (the model's format)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    try:
        model = load_model(args.pb_dir, args.model)
        out = sys.stdout
        for p in predict_rows(model, data_rows(model, args.data, args.limit)):
            out.write(f"{p:.7g}\n")
        out.flush()
    except ModelReaderError as e:
        print(f"model_reader: {e}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # e.g. | head
    except OSError as e:
        print(f"model_reader: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
