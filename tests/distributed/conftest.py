# ddp_checks.py runs under mpiexec (test_distributed.py starts it), never inside pytest
collect_ignore = ["ddp_checks.py"]
