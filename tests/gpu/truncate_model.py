#!/usr/bin/env python3
"""Writes a copy of a llama-family GGUF that keeps only its first N layers (metadata,
tokenizer, embeddings and output head unchanged; block_count rewritten). The result is a
smaller file with real weight statistics: small enough to travel to a GPU machine with the
build, and its logits are as well-defined as the full model's, so the CUDA backend can be
checked against the CPU backend on real weights.

    tests/gpu/truncate_model.py SRC.gguf DST.gguf --layers 10

Needs the `gguf` Python package (pip install gguf)."""
import argparse
import re
import sys

try:
    import gguf
except ImportError:
    sys.exit("truncate_model.py: the Python package 'gguf' is missing (pip install gguf)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--layers", type=int, required=True)
    args = ap.parse_args()

    reader = gguf.GGUFReader(args.src)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    count_key = f"{arch}.block_count"
    total = int(reader.fields[count_key].parts[-1][0])
    if not 1 <= args.layers <= total:
        sys.exit(f"truncate_model.py: --layers must be 1..{total}")

    writer = gguf.GGUFWriter(args.dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if name == count_key:
            writer.add_uint32(name, args.layers)
        elif vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                vals = [str(bytes(field.parts[i]), "utf-8") for i in field.data]
            else:
                vals = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(name, vals)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(name, str(bytes(field.parts[-1]), "utf-8"))
        else:
            writer.add_key_value(name, field.parts[-1].tolist()[0], vtype)

    layer = re.compile(r"^blk\.(\d+)\.")
    kept = 0
    for t in reader.tensors:
        m = layer.match(t.name)
        if m and int(m.group(1)) >= args.layers:
            continue
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
        kept += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{args.dst}: {kept} tensors, {args.layers} of {total} layers")


if __name__ == "__main__":
    main()
