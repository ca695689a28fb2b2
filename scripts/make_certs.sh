#!/usr/bin/env bash
# Makes a private CA and a server certificate for a vico manager, with openssl.
#
#   scripts/make_certs.sh DIR NAME [NAME...]
#
# NAMEs are the host names and IP addresses runners will dial (they go into
# the certificate's subjectAltName). DIR gets:
#
#   ca.crt       the CA certificate: give it to runners (--tls-ca DIR/ca.crt)
#   ca.key       the CA key (0600): keep it off the network; it signs servers
#   manager.crt  the manager's certificate (--tls-cert)
#   manager.key  the manager's key (0600, --tls-key)
#   secret       a random shared secret (0600, --secret-file on both sides)
#
# Run again with the same DIR to issue a new manager certificate from the
# same CA (for new names); the CA and secret are kept.
#
# Example:
#   scripts/make_certs.sh ./pki head.cluster 10.0.0.5
#   manager --jobs jobs.txt --host 0.0.0.0 --tls-cert pki/manager.crt \
#           --tls-key pki/manager.key --secret-file pki/secret
#   runner --manager head.cluster:7707 --workers 8 --tls-ca pki/ca.crt \
#          --secret-file pki/secret
#
# Without any of this, 'manager --host 0.0.0.0' enrolls by itself (a
# self-signed certificate and a secret) and prints a join token.
set -euo pipefail

if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit $(( $# < 2 ? 2 : 0 ))
fi
command -v openssl >/dev/null || { echo "make_certs.sh: openssl is needed" >&2; exit 2; }

dir=$1
shift
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}

if [[ ! -f $dir/ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=vico private CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/ca.crt"
  echo "made CA: $dir/ca.crt"
fi

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
  -keyout "$dir/manager.key" -out "$dir/manager.csr" 2>/dev/null
openssl x509 -req -in "$dir/manager.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 825 -out "$dir/manager.crt" \
  -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san") \
  2>/dev/null
rm -f "$dir/manager.csr"
chmod 644 "$dir/manager.crt"
echo "made manager certificate for $san: $dir/manager.crt (key $dir/manager.key)"

if [[ ! -f $dir/secret ]]; then
  openssl rand -hex 32 >"$dir/secret"
  echo "made shared secret: $dir/secret"
fi
