#!/usr/bin/env bash
# Build the Python dependency layer for the copilot Lambda functions.
#
#   infra/deploy/build_layer.sh             # x86_64 (default, matches serverless.yml)
#   ARCH=arm64 infra/deploy/build_layer.sh  # only if every dependency ships aarch64 wheels
#                                           # (wordllama currently does not -> pip fails)
#
# Output: build/deps-layer.zip (layer layout: python/<packages>, mounted at /opt/python).
# Installs manylinux2014 wheels only (python3.11 Lambda = Amazon Linux 2, glibc 2.26), so it
# works from any host OS/arch with network access to PyPI; no Docker needed.
# Then prints the `aws lambda publish-layer-version` command to run; this script never calls AWS.
set -euo pipefail

ARCH="${ARCH:-x86_64}"                # Lambda architecture: x86_64 | arm64
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
PYTHON="${PYTHON:-python3}"           # any local python with pip; the target version is forced below
LAYER_NAME="${LAYER_NAME:-copilot-deps}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

case "$ARCH" in
  arm64|aarch64) ARCH=arm64;  PLATFORM=manylinux2014_aarch64 ;;
  x86_64|amd64)  ARCH=x86_64; PLATFORM=manylinux2014_x86_64 ;;
  *) echo "error: unsupported ARCH '$ARCH' (use arm64 or x86_64)" >&2; exit 2 ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQUIREMENTS="$REPO_ROOT/infra/deploy/requirements-lambda.txt"
BUILD_DIR="$REPO_ROOT/build"
LAYER_DIR="$BUILD_DIR/layer"
ZIP="$BUILD_DIR/deps-layer.zip"

[[ -f "$REQUIREMENTS" ]] || { echo "error: $REQUIREMENTS not found" >&2; exit 1; }
command -v zip >/dev/null 2>&1 || { echo "error: 'zip' is required (apt-get install zip)" >&2; exit 1; }

echo ">> building $ARCH layer ($PLATFORM, python $PYTHON_VERSION) from $REQUIREMENTS"
rm -rf "$LAYER_DIR" "$ZIP"
mkdir -p "$LAYER_DIR/python"

"$PYTHON" -m pip install \
  --disable-pip-version-check \
  --no-cache-dir \
  --upgrade \
  --platform "$PLATFORM" \
  --implementation cp \
  --python-version "$PYTHON_VERSION" \
  --only-binary=:all: \
  --target "$LAYER_DIR/python" \
  -r "$REQUIREMENTS"

# Trim boto3/botocore if something pulled them in (the runtime provides them).
rm -rf "$LAYER_DIR/python/bin"
for pkg in boto3 botocore s3transfer; do
  rm -rf "$LAYER_DIR/python/$pkg" "$LAYER_DIR/python/$pkg"-*.dist-info
done

# Ship bytecode. Lambda's /opt is read-only, so without .pyc files every cold start compiles
# every imported module again (measured: +1.7 s of a 3.1 s cold start, docs/benchmarks.md).
# unchecked-hash: valid whatever the files' timestamps become inside the zip.
find "$LAYER_DIR/python" -type d -name __pycache__ -prune -exec rm -rf {} +
python3.11 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$LAYER_DIR/python" \
  || python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$LAYER_DIR/python"

(cd "$LAYER_DIR" && zip -q -r -9 "$ZIP" python)

unzipped_kb=$(du -sk "$LAYER_DIR/python" | cut -f1)
zipped_kb=$(du -sk "$ZIP" | cut -f1)
echo ">> wrote $ZIP (${zipped_kb} KiB zipped, ${unzipped_kb} KiB unzipped)"
# Lambda limit: 250 MB unzipped for function code + all layers combined.
if (( unzipped_kb > 240 * 1024 )); then
  echo "warning: layer is close to / above the 250 MB unzipped Lambda limit" >&2
fi
# Direct-upload limit for publish-layer-version --zip-file is 50 MB; larger zips must go via S3.
if (( zipped_kb > 50 * 1024 )); then
  cat <<MSG

The zip is larger than 50 MB, so upload it to S3 first and publish from there:

  aws s3 cp "$ZIP" "s3://<artifact-bucket>/layers/deps-layer-$ARCH.zip" --region "$REGION"
  aws lambda publish-layer-version --region "$REGION" \\
    --layer-name "$LAYER_NAME" \\
    --description "copilot deps ($ARCH, python$PYTHON_VERSION)" \\
    --content "S3Bucket=<artifact-bucket>,S3Key=layers/deps-layer-$ARCH.zip" \\
    --compatible-runtimes "python$PYTHON_VERSION" \\
    --compatible-architectures "$ARCH" \\
    --query LayerVersionArn --output text
MSG
else
  cat <<MSG

Publish it with:

  aws lambda publish-layer-version --region "$REGION" \\
    --layer-name "$LAYER_NAME" \\
    --description "copilot deps ($ARCH, python$PYTHON_VERSION)" \\
    --zip-file "fileb://$ZIP" \\
    --compatible-runtimes "python$PYTHON_VERSION" \\
    --compatible-architectures "$ARCH" \\
    --query LayerVersionArn --output text
MSG
fi
ARCH_PARAM=""
if [[ "$ARCH" != x86_64 ]]; then
  ARCH_PARAM=$' \\\n    --param="architecture='"$ARCH"'"'
fi
cat <<MSG

Then deploy with the printed ARN (architecture must match: $ARCH):

  infra/node/node_modules/.bin/serverless deploy --stage <stage> --region "$REGION" \\
    --param="depsLayerArn=<LayerVersionArn>" --param="chromaUrl=<https://your-chroma>"${ARCH_PARAM}
MSG
