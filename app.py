"""Hugging Face Spaces entry point: load the linker once and serve GEMEL Studio (see demo/app.py).

Settings come from the environment: GEMEL_PROFILE, GEMEL_DB, GEMEL_AUTH, GRADIO_SERVER_NAME/PORT,
GEMEL_HUB_DATASET + HF_TOKEN (optional push of exported corrections).
"""

from demo.app import main

if __name__ == "__main__":
    main()
