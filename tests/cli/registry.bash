# A real registry on loopback for the remote tests (issue 9): Debian's docker-registry with its
# storage, config and log in the test's temp dir, stopped by PID.
#
#   registry_start [--htpasswd]   start it; exports REGISTRY=127.0.0.1:PORT and REGISTRY_DIR
#                                 (config.yml, storage/, registry.log, registry.pid); with
#                                 --htpasswd it asks for basic auth: user alice, password wonder
#                                 (REGISTRY_CREDS=alice:wonder)
#   registry_stop                 kill it by PID and wait for it to go
#   registry_upload_requests      how many blob upload requests (POST, PATCH, PUT on
#                                 /v2/*/blobs/uploads/) the registry has answered so far
#
# The test is skipped (with the reason) when docker-registry or, for --htpasswd, htpasswd is not
# installed, or when the registry does not come up.

# registry_free_port: print a loopback TCP port nothing listens on now.
registry_free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

registry_start() {
	local auth=
	[ "${1-}" = --htpasswd ] && auth=1
	command -v docker-registry >/dev/null ||
		skip "docker-registry is not installed (apt-get install docker-registry)"
	command -v curl >/dev/null || skip "curl is not installed"
	REGISTRY_DIR=${BATS_TEST_TMPDIR:?}/registry
	mkdir -p "$REGISTRY_DIR/storage"
	local port cfg=$REGISTRY_DIR/config.yml
	port=$(registry_free_port)
	cat >"$cfg" <<-EOF
		version: 0.1
		log:
		  level: info
		  accesslog:
		    disabled: false
		storage:
		  filesystem:
		    rootdirectory: $REGISTRY_DIR/storage
		  delete:
		    enabled: true
		http:
		  addr: 127.0.0.1:$port
	EOF
	if [ -n "$auth" ]; then
		command -v htpasswd >/dev/null ||
			skip "htpasswd is not installed (apt-get install apache2-utils)"
		htpasswd -Bbn alice wonder >"$REGISTRY_DIR/htpasswd" 2>/dev/null
		cat >>"$cfg" <<-EOF
			auth:
			  htpasswd:
			    realm: cairn-test
			    path: $REGISTRY_DIR/htpasswd
		EOF
		export REGISTRY_CREDS=alice:wonder
	fi
	docker-registry serve "$cfg" >"$REGISTRY_DIR/registry.log" 2>&1 </dev/null 3>&- &
	local pid=$!
	echo "$pid" >"$REGISTRY_DIR/registry.pid"
	export REGISTRY=127.0.0.1:$port REGISTRY_DIR
	local i code
	for ((i = 0; i < 300; i++)); do
		# 200 without auth, 401 with it: either way the API answers
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/" 2>/dev/null) || true
		case $code in 200 | 401) return 0 ;; esac
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -5 "$REGISTRY_DIR/registry.log" >&2
			rm -f "$REGISTRY_DIR/registry.pid"
			skip "docker-registry exited at start (log above)"
		fi
		sleep 0.05
	done
	registry_stop
	skip "docker-registry did not answer on $REGISTRY/v2/ within 15 s"
}

registry_stop() {
	local f=${REGISTRY_DIR:-}/registry.pid pid
	[ -n "${REGISTRY_DIR:-}" ] && [ -f "$f" ] || return 0
	pid=$(cat "$f")
	rm -f "$f"
	kill "$pid" 2>/dev/null || return 0
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# registry_upload_requests: count the blob upload requests in the registry's access log. A
# push that finds every blob present (HEAD) makes none.
registry_upload_requests() {
	grep -c '"\(POST\|PATCH\|PUT\) /v2/[^ ]*/blobs/uploads/' "$REGISTRY_DIR/registry.log" || true
}

# registry_put_blob FILE REPO: upload FILE as a blob of REPO (monolithic); prints its digest.
registry_put_blob() {
	local dg loc
	dg=sha256:$(sha256sum "$1" | cut -d' ' -f1)
	loc=$(curl -sf -X POST -D - -o /dev/null "http://$REGISTRY/v2/$2/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	[ -n "$loc" ] || return 1
	case $loc in /*) loc=http://$REGISTRY$loc ;; esac
	case $loc in *\?*) loc="$loc&digest=$dg" ;; *) loc="$loc?digest=$dg" ;; esac
	curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc" \
		>/dev/null || return 1
	echo "$dg"
}

# registry_put_manifest FILE REPO TAG [MEDIA-TYPE]: put FILE as manifest TAG of REPO.
registry_put_manifest() {
	curl -sf -X PUT -H "Content-Type: ${4:-application/vnd.oci.image.manifest.v1+json}" \
		--data-binary "@$1" "http://$REGISTRY/v2/$2/manifests/$3" >/dev/null
}

# registry_delete_blob REPO DIGEST: delete a blob of REPO (the registry then answers 404).
registry_delete_blob() {
	curl -sf -X DELETE "http://$REGISTRY/v2/$1/blobs/$2" >/dev/null
}
