"""Hugging Face Spaces entry point: prepare a first start (demo/space.py: the GGUF package requirements.txt cannot
list, caches on /data) and serve GEMEL Studio (demo/app.py). Settings come from the environment: GEMEL_PROFILE,
GEMEL_DB, GEMEL_CACHE, GEMEL_AUTH, GRADIO_SERVER_NAME/PORT, GEMEL_HUB_DATASET + HF_TOKEN.
"""

from demo.app import main
from demo.space import prepare_space

if __name__ == "__main__":
    prepare_space()
    main()
