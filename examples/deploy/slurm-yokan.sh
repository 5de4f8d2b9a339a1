#!/bin/bash
# A Slurm job: one yokan-server on the first node of the allocation, the
# application on all nodes, reading the server's address from a shared file.
#
#   sbatch -N 4 slurm-yokan.sh my_app.py
#
#SBATCH --job-name=yokan
#SBATCH --time=01:00:00
#SBATCH --nodes=2
set -euo pipefail

shared="${SLURM_SUBMIT_DIR}/yokan-${SLURM_JOB_ID}"   # on the parallel file system
mkdir -p "$shared"
# A fresh secret per job, readable only by this user (the server refuses a
# token file that group or others can read). The server listens on a network
# interface, so protected mode requires it; the application's engines use it
# too: Engine("tcp", config={"auth": {"token_file": os.environ["YOKAN_TOKEN_FILE"]}}).
(umask 077 && openssl rand -hex 32 > "$shared/token")
cat > "$shared/yokan.json" <<JSON
{"engine": {"auth": {"token_file": "$shared/token"}},
 "providers": [{"name": "state", "type": "yokan", "provider_id": 1,
  "config": {"database": {"type": "map"}}}]}
JSON

# The server: one task on the first node, listening on its network interface.
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1)
srun --nodes=1 --ntasks=1 --nodelist="$first_node" --overlap \
  yokan-server "tcp://$first_node:7700" -c "$shared/yokan.json" \
  --address-file "$shared/address" --log-file "$shared/server.log" &
server=$!

# The address file appears (atomically) once the server serves.
for _ in $(seq 600); do [ -s "$shared/address" ] && break; sleep 0.1; done
[ -s "$shared/address" ] || { echo "yokan-server did not start" >&2; exit 1; }

# The application: every task reads the address (and the token file) from $shared.
YOKAN_ADDRESS=$(cat "$shared/address") YOKAN_TOKEN_FILE="$shared/token" \
  srun --overlap python3 "$@"

kill -TERM "$server"   # clean stop: backends flushed
wait "$server"
