package oauth

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestParsePrivateKeyAccepts(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	jwkNoAlg, err := jose.JSONWebKey{Key: k.rsaA}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"private JWK", mustPrivateJWK(t, k.rsaA)},
		{"private JWK without alg or use", jwkNoAlg},
		{"JWK with surrounding whitespace", []byte("\n  " + string(mustPrivateJWK(t, k.rsaA)) + "\n\n")},
		{"PKCS#1 PEM", pemPKCS1(k.rsaA)},
		{"PKCS#8 PEM", pemPKCS8(t, k.rsaA)},
		{"PEM after a certificate-ish block", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), pemPKCS8(t, k.rsaA)...)},
		{"PEM with leading text", append([]byte("Private-Key: (2048 bit)\n"), pemPKCS1(k.rsaA)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.data)
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			if !got.Equal(k.rsaA) {
				t.Fatal("parsed key differs from the original")
			}
		})
	}
}

func TestParsePrivateKeyRefuses(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	pubJWK, err := MarshalPublicJWK(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecJWK, err := jose.JSONWebKey{Key: k.ec}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	ecPubJWK, err := jose.JSONWebKey{Key: &k.ec.PublicKey}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	edJWK, err := jose.JSONWebKey{Key: k.ed}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	octJWK, err := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	pkixDER, err := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privJWK := mustPrivateJWK(t, k.rsaA)
	var jwkMap map[string]any
	if err := json.Unmarshal(privJWK, &jwkMap); err != nil {
		t.Fatal(err)
	}
	withField := func(key string, v any) []byte {
		m := map[string]any{}
		for k, v := range jwkMap {
			m[k] = v
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	otherD := map[string]any{}
	{
		b := mustPrivateJWK(t, k.rsaB)
		if err := json.Unmarshal(b, &otherD); err != nil {
			t.Fatal(err)
		}
	}
	mismatchedD := *k.rsaA // a well-formed DER key whose d belongs to another key
	mismatchedD.D = k.rsaB.D
	mismatchedD.Precomputed = rsa.PrecomputedValues{}
	tests := []struct {
		name string
		data []byte
		want string // exact error
	}{
		{"empty", nil, "key is empty"},
		{"blank", []byte(" \n\t"), "key is empty"},
		{"garbage", []byte("hello world this is not a key at all"), "key is neither a JWK (JSON object) nor PEM"},
		{"DER", x509.MarshalPKCS1PrivateKey(k.rsaA), "key is neither a JWK (JSON object) nor PEM"},
		{"truncated JWK", privJWK[:len(privJWK)/2], "malformed JWK: truncated JSON"},
		{"JWK syntax error", []byte(`{"kty": RSA}`), "malformed JWK: not valid JSON (error at byte 9 of 12)"},
		{"JWK kty not a string", []byte(`{"kty": 5}`), "malformed JWK: field kty is a JSON number, want string"},
		{"JWK without kty", []byte(`{"n": "AQAB"}`), "malformed JWK: missing json web key type"},
		{"JWK set", []byte(`{"keys": [` + string(privJWK) + `]}`), `JWK is a key set ({"keys": [...]}); put the single private key object in the file`},
		{"JWK unknown kty", []byte(`{"kty": "XYZ"}`), `JWK key type "XYZ" is not supported; tokend needs an RSA private key`},
		{"JWK missing primes", withField("p", nil), "malformed JWK: invalid RSA private key, missing P value(s)"},
		{"JWK mismatched d", withField("d", otherD["d"]), "malformed JWK: crypto/rsa: d does not match dP"},
		{"PKCS#1 mismatched d", pemPKCS1(&mismatchedD), "malformed PKCS#1 PEM (RSA PRIVATE KEY): crypto/rsa: invalid CRT exponent"},
		{"public JWK", pubJWK, "JWK is a public key; tokend needs the private key"},
		{"EC JWK", ecJWK, "JWK is an EC private key (P-256); tokend needs an RSA private key (LINE assertions are RS256)"},
		{"EC public JWK", ecPubJWK, "JWK is an EC public key (P-256); tokend needs an RSA private key"},
		{"Ed25519 JWK", edJWK, "JWK is an Ed25519 private key; tokend needs an RSA private key (LINE assertions are RS256)"},
		{"symmetric JWK", octJWK, "JWK is a symmetric (oct) key; tokend needs an RSA private key"},
		{"1024-bit JWK", mustPrivateJWK(t, k.rsa1024), "JWK RSA key is 1024 bits; tokend needs at least 2048"},
		{"JWK alg RS512", withField("alg", "RS512"), `JWK alg is "RS512"; LINE assertions are signed RS256`},
		{"JWK use enc", withField("use", "enc"), `JWK use is "enc"; an assertion signing key has use "sig"`},
		{"1024-bit PKCS#1", pemPKCS1(k.rsa1024), "PKCS#1 PEM RSA key is 1024 bits; tokend needs at least 2048"},
		{"1024-bit PKCS#8", pemPKCS8(t, k.rsa1024), "PKCS#8 PEM RSA key is 1024 bits; tokend needs at least 2048"},
		{"EC SEC1 PEM", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), "PEM is an EC private key; tokend needs an RSA private key (LINE assertions are RS256)"},
		{"EC SEC1 PEM after EC PARAMETERS", append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...), "PEM is an EC private key; tokend needs an RSA private key (LINE assertions are RS256)"},
		{"EC PKCS#8 PEM", pemPKCS8(t, k.ec), "PKCS#8 PEM is an EC private key (P-256); tokend needs an RSA private key (LINE assertions are RS256)"},
		{"Ed25519 PKCS#8 PEM", pemPKCS8(t, k.ed), "PKCS#8 PEM is an Ed25519 private key; tokend needs an RSA private key (LINE assertions are RS256)"},
		{"public PEM", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkixDER}), "PEM is a public key; tokend needs the private key"},
		{"RSA public PEM", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsaA.PublicKey)}), "PEM is a public key; tokend needs the private key"},
		{"certificate only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "PEM is a certificate; tokend needs the private key"},
		{"OpenSSH", pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("openssh-key-v1\x00")}), "PEM is an OpenSSH private key, which is not supported; convert it to PKCS#8 (ssh-keygen -p -m PKCS8 -f KEY)"},
		{"unknown PEM type", pem.EncodeToMemory(&pem.Block{Type: "FOO", Bytes: []byte{1}}), `PEM block type "FOO" is not a private key tokend reads (want RSA PRIVATE KEY or PRIVATE KEY)`},
		{"two private keys", append(pemPKCS1(k.rsaA), pemPKCS8(t, k.rsaB)...), "PEM holds 2 private keys; keep only the assertion signing key"},
		{"PEM header only", []byte("-----BEGIN RSA PRIVATE KEY-----\n"), "malformed PEM: no complete PEM block found"},
		{"PKCS#1 garbage body", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("definitely not ASN.1 DER data at all")}), "malformed PKCS#1 PEM (RSA PRIVATE KEY): invalid DER encoding"},
		{"PKCS#1 holding PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs8DER(t, k.rsaA)}), "malformed PKCS#1 PEM (RSA PRIVATE KEY): the block holds a PKCS#8 key; its BEGIN line should say PRIVATE KEY"},
		{"PKCS#8 garbage body", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("definitely not ASN.1 DER data at all")}), "malformed PKCS#8 PEM (PRIVATE KEY): invalid DER encoding"},
		{"PKCS#8 holding PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsaA)}), "malformed PKCS#8 PEM (PRIVATE KEY): the block holds a PKCS#1 key; its BEGIN line should say RSA PRIVATE KEY"},
		{"encrypted legacy PEM", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte("0123456789abcdef0123456789abcdef")}), "PEM key is encrypted; tokend needs it unencrypted (e.g. openssl pkey -in KEY -out KEY.plain), protected by file permissions"},
		{"encrypted PKCS#8 PEM", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("0123456789abcdef0123456789abcdef")}), "PEM key is encrypted; tokend needs it unencrypted (e.g. openssl pkey -in KEY -out KEY.plain), protected by file permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// parseKey is ReadPrivateKey's parse, which does not derive
			// the CRT values itself: the parsers' own checks must refuse
			// an inconsistent key.
			for name, parse := range map[string]func([]byte) (*rsa.PrivateKey, error){"ParsePrivateKey": ParsePrivateKey, "parseKey": parseKey} {
				got, err := parse(tt.data)
				if err == nil {
					t.Fatalf("%s accepted it (%d-bit key)", name, bitLen(got))
				}
				if err.Error() != tt.want {
					t.Errorf("%s error:\n got: %s\nwant: %s", name, err, tt.want)
				}
				assertNoLeak(t, err.Error(), tt.data)
			}
		})
	}
}

func TestMarshalJWK(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	pub, err := MarshalPublicJWK(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(pub, &m); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"kty": "RSA", "alg": "RS256", "use": "sig", "e": "AQAB"} {
		if m[field] != want {
			t.Errorf("public JWK %s = %v, want %q", field, m[field], want)
		}
	}
	for _, field := range []string{"kid", "d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := m[field]; ok {
			t.Errorf("public JWK has %q; LINE refuses a kid and private members must never appear", field)
		}
	}

	priv, err := MarshalPrivateJWK(k.rsaA)
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	if err := json.Unmarshal(priv, &m); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"kty": "RSA", "alg": "RS256", "use": "sig"} {
		if m[field] != want {
			t.Errorf("private JWK %s = %v, want %q", field, m[field], want)
		}
	}
	if _, ok := m["kid"]; ok {
		t.Error("private JWK has a kid")
	}
	back, err := ParsePrivateKey(priv)
	if err != nil {
		t.Fatalf("private JWK does not parse back: %v", err)
	}
	if !back.Equal(k.rsaA) {
		t.Fatal("private JWK round trip changed the key")
	}

	if _, err := MarshalPrivateJWK(nil); err == nil || err.Error() != "marshal private JWK: no key" {
		t.Errorf("MarshalPrivateJWK(nil) = %v", err)
	}
	if _, err := MarshalPublicJWK(nil); err == nil || err.Error() != "marshal public JWK: no key" {
		t.Errorf("MarshalPublicJWK(nil) = %v", err)
	}
}

func writeKeyFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.jwk")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // explicit: WriteFile is subject to umask
		t.Fatal(err)
	}
	return p
}

func TestLoadPrivateKey(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	jwk := mustPrivateJWK(t, k.rsaA)
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := writeKeyFile(t, jwk, mode)
		got, err := LoadPrivateKey(p)
		if err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		} else if !got.Equal(k.rsaA) {
			t.Errorf("mode %04o: loaded a different key", mode)
		}
	}
	// PEM from a file, through a symlink (as Kubernetes secret mounts do).
	p := writeKeyFile(t, pemPKCS8(t, k.rsaA), 0o600)
	link := filepath.Join(t.TempDir(), "link.pem")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadPrivateKey(link); err != nil || !got.Equal(k.rsaA) {
		t.Errorf("via symlink: %v", err)
	}
	// ReadPrivateKey: the same key, without its CRT values kept; it signs
	// all the same.
	for _, data := range [][]byte{jwk, pemPKCS1(k.rsaA)} {
		got, err := ReadPrivateKey(writeKeyFile(t, data, 0o600))
		if err != nil || !got.Equal(k.rsaA) {
			t.Fatalf("ReadPrivateKey: %v (or a different key)", err)
		}
		digest := sha256.Sum256([]byte("assertion"))
		sig, err := rsa.SignPKCS1v15(nil, got, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(&k.rsaA.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			t.Errorf("a signature by ReadPrivateKey's key does not verify: %v", err)
		}
	}
}

func TestLoadPrivateKeyRefuses(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	jwk := mustPrivateJWK(t, k.rsaA)
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string // %s is replaced by the path
	}{
		{"mode 0644", func(t *testing.T) string { return writeKeyFile(t, jwk, 0o644) },
			"private key %s is readable by group or others (mode 0644); run chmod 600 %s"},
		{"mode 0640", func(t *testing.T) string { return writeKeyFile(t, jwk, 0o640) },
			"private key %s is readable by group or others (mode 0640); run chmod 600 %s"},
		{"mode 0604", func(t *testing.T) string { return writeKeyFile(t, jwk, 0o604) },
			"private key %s is readable by group or others (mode 0604); run chmod 600 %s"},
		{"mode 0620", func(t *testing.T) string { return writeKeyFile(t, jwk, 0o620) },
			"private key %s is accessible by group or others (mode 0620); run chmod 600 %s"},
		{"directory", func(t *testing.T) string { return t.TempDir() },
			"private key %s is a directory, not a key file"},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.jwk") },
			"private key: stat %s: no such file or directory"},
		{"public key file", func(t *testing.T) string {
			b, _ := MarshalPublicJWK(&k.rsaA.PublicKey)
			return writeKeyFile(t, b, 0o600)
		}, "private key %s: JWK is a public key; tokend needs the private key"},
		{"empty file", func(t *testing.T) string { return writeKeyFile(t, nil, 0o600) },
			"private key %s: key is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path(t)
			for name, load := range map[string]func(string) (*rsa.PrivateKey, error){"LoadPrivateKey": LoadPrivateKey, "ReadPrivateKey": ReadPrivateKey} {
				_, err := load(p)
				if err == nil {
					t.Fatalf("%s accepted it", name)
				}
				want := strings.ReplaceAll(tt.want, "%s", p)
				if err.Error() != want {
					t.Errorf("%s error:\n got: %s\nwant: %s", name, err, want)
				}
				assertNoLeak(t, err.Error(), jwk)
			}
		})
	}
}

func TestLoadPrivateKeyUnreadable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of mode")
	}
	p := writeKeyFile(t, []byte("{}"), 0o000)
	_, err := LoadPrivateKey(p)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v: want a permission error naming %s", err, p)
	}
}

func TestWriteNewKey(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "new.jwk")
	pub, err := WriteNewKey(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	k, err := LoadPrivateKey(p)
	if err != nil {
		t.Fatalf("written key does not load: %v", err)
	}
	if k.N.BitLen() != 2048 {
		t.Errorf("generated %d-bit key, want 2048", k.N.BitLen())
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(pub); err != nil {
		t.Fatalf("public JWK: %v", err)
	}
	rpub, ok := jwk.Key.(*rsa.PublicKey)
	if !ok || !rpub.Equal(&k.PublicKey) {
		t.Fatalf("public JWK holds %T, not the written key's public half", jwk.Key)
	}
	if jwk.KeyID != "" || jwk.Algorithm != "RS256" || jwk.Use != "sig" {
		t.Errorf("public JWK kid=%q alg=%q use=%q", jwk.KeyID, jwk.Algorithm, jwk.Use)
	}

	before, _ := os.ReadFile(p)
	_, err = WriteNewKey(p)
	if want := "write new key: " + p + " already exists; refusing to overwrite"; err == nil || err.Error() != want {
		t.Errorf("second write: %v, want %q", err, want)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Error("existing key file was modified")
	}

	if _, err := WriteNewKey(filepath.Join(t.TempDir(), "missing-dir", "k.jwk")); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := WriteNewKey(""); err == nil || err.Error() != "write new key: empty path" {
		t.Errorf("empty path: %v", err)
	}
}
