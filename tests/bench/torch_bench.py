"""Training images/s of the study's model in PyTorch, per pattern, on CPU or GPU.

usage: python3 tests/bench/torch_bench.py [--threads 2] [--steps 5] [--device cpu]
                                          [--patterns ABCDE] [--batch 128]
                                          [--tf32 | --bf16]
Prints one line per pattern: pattern, median seconds per step, images/s.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import PATTERNS, inception_alexnet  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patterns", default="ABCDE")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--bf16", action="store_true",
                        help="autocast to bfloat16 (mixed precision, fp32 weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    print(f"# torch {torch.__version__}, device {args.device}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, "
          f"{'bf16 autocast' if args.bf16 else 'tf32' if args.tf32 else 'fp32'}")
    print("framework,pattern,median_step_s,images_per_s")
    for name in args.patterns:
        mode, alpha = PATTERNS[name]
        torch.manual_seed(0)
        model = inception_alexnet(mode, alpha, args.channels).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.rand(args.batch, args.channels, 32, 32, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        times = []
        for step in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"pytorch,{name},{median:.4f},{args.batch / median:.1f}", flush=True)


if __name__ == "__main__":
    main()
