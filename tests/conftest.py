import pathlib
import sys

# shared test helpers (op_cases.py) import as top-level modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))
