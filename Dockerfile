# The image every node of a fusionlab cluster runs (cluster/aws-gpu.yaml, gcp-gpu.yaml, kuberay.yaml): Ray's GPU
# image with torch and this checkout of fusionlab installed, so a node starts training without a pip install, and a
# spot node that replaces another hours later runs exactly the same code.
#
#   docker build -t REGISTRY/fusionlab:$(git describe --tags --always) .
#   docker push REGISTRY/fusionlab:...      # then set docker.image (or the pods' image) in the cluster file
#
# Ray's version is the one the laptop launching the cluster runs (`ray --version`), torch the Makefile's pin.
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

# torch first and pinned: on Linux x86_64 PyPI's torch==2.13.0 is the CUDA build (the CUDA runtime comes in nvidia-*
# wheels; the host needs only the NVIDIA driver); installing fusionlab first would let pip pick any torch its range
# allows.
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}"

# MLflow's PostgreSQL driver and the clients of the buckets MLflow's artifacts and Ray's checkpoints go to.
RUN pip install --no-cache-dir psycopg2-binary boto3 google-cloud-storage

COPY --chown=ray:users pyproject.toml README.md /opt/fusionlab/
COPY --chown=ray:users platform /opt/fusionlab/platform
COPY --chown=ray:users experiments /opt/fusionlab/experiments
RUN pip install --no-cache-dir /opt/fusionlab && python -c "import fusionlab.cli, torch, ray, mlflow"
