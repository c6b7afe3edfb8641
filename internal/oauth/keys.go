package oauth

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// minKeyBits is the smallest RSA key tokend accepts (LINE's guide uses 2048).
const minKeyBits = 2048

// maxKeyFileBytes caps how much of a key file is read.
const maxKeyFileBytes = 1 << 20

// LoadPrivateKey reads an RSA assertion signing key (JWK or PEM) from path,
// validated and ready to sign many assertions (ReadPrivateKey, then
// rsa.PrivateKey.Precompute). The file must be a regular file (symlinks are
// followed) that neither group nor others can access.
func LoadPrivateKey(path string) (*rsa.PrivateKey, error) {
	k, err := ReadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	if err := precompute(k); err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}

// ReadPrivateKey is LoadPrivateKey without Precompute: the key is checked
// (a JWK by go-jose, a PEM key by crypto/x509, each deriving and checking
// its CRT values), but a JWK key keeps none of them. It signs correctly,
// deriving them again at each signature (about 0.15 ms); it holds 1.7 KB
// of memory instead of 4.4 KB. Meant for a key that signs rarely, such as
// one of 10,000 channels that each have their own. Precompute may be called
// later, before the key is shared between goroutines.
func ReadPrivateKey(path string) (*rsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if err := checkKeyFile(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	defer f.Close()
	// Check the opened file again: the path may have changed since Stat.
	ofi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if err := checkKeyFile(path, ofi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("private key %s is larger than %d bytes; is it the right file?", path, maxKeyFileBytes)
	}
	k, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}

// checkKeyFile refuses anything but a regular file private to its owner.
func checkKeyFile(path string, fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		return fmt.Errorf("private key %s is a directory, not a key file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("private key %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	perm := fi.Mode().Perm()
	if perm&0o077 != 0 {
		how := "readable"
		if perm&0o044 == 0 {
			how = "accessible"
		}
		return fmt.Errorf("private key %s is %s by group or others (mode %04o); run chmod 600 %s", path, how, perm, path)
	}
	return nil
}

// ParsePrivateKey parses an RSA private key of at least 2048 bits from a JWK
// (a JSON object, as LINE's guide creates) or PEM (PKCS#1 "RSA PRIVATE KEY"
// or PKCS#8 "PRIVATE KEY"). Errors say what the data is instead when it is
// a public key, another key type, too small, encrypted or malformed; they
// never quote the data.
//
// The key comes back validated, with its CRT values derived
// (rsa.PrivateKey.Precompute).
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	k, err := parseKey(data)
	if err != nil {
		return nil, err
	}
	if err := precompute(k); err != nil {
		return nil, err
	}
	return k, nil
}

// precompute derives and keeps k's CRT values. Precompute goes first, as in
// crypto/x509: Validate then checks the stored values instead of deriving
// them all again. On an invalid key Precompute keeps nothing and Validate
// says why (the parsers have already refused such a key: this is the last
// line).
func precompute(k *rsa.PrivateKey) error {
	k.Precompute()
	if err := k.Validate(); err != nil {
		return fmt.Errorf("RSA key is invalid: %v", err)
	}
	return nil
}

// parseKey is ParsePrivateKey without precompute: the parsers validate
// the key (go-jose's JWK parser calls Validate; crypto/x509's call
// Precompute and Validate).
func parseKey(data []byte) (*rsa.PrivateKey, error) {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return nil, errors.New("key is empty")
	case data[0] == '{':
		return parseJWK(data)
	case bytes.Contains(data, []byte("-----BEGIN")):
		return parsePEM(data)
	}
	return nil, errors.New("key is neither a JWK (JSON object) nor PEM")
}

func parseJWK(data []byte) (*rsa.PrivateKey, error) {
	// Probe the members we explain ourselves before go-jose sees the key.
	var probe struct {
		Keys json.RawMessage `json:"keys"`
		Kty  string          `json:"kty"`
		Alg  string          `json:"alg"`
		Use  string          `json:"use"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("malformed JWK: %s", describeJSONError(err, len(data)))
	}
	if probe.Keys != nil && probe.Kty == "" {
		return nil, errors.New("JWK is a key set ({\"keys\": [...]}); put the single private key object in the file")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		if errors.Is(err, jose.ErrUnsupportedKeyType) {
			return nil, fmt.Errorf("JWK key type %q is not supported; tokend needs an RSA private key", clean(probe.Kty))
		}
		return nil, fmt.Errorf("malformed JWK: %s", joseError(err))
	}
	k, err := rsaKey("JWK", jwk.Key)
	if err != nil {
		return nil, err
	}
	if probe.Alg != "" && probe.Alg != "RS256" {
		return nil, fmt.Errorf("JWK alg is %q; LINE assertions are signed RS256", clean(probe.Alg))
	}
	if probe.Use != "" && probe.Use != "sig" {
		return nil, fmt.Errorf("JWK use is %q; an assertion signing key has use \"sig\"", clean(probe.Use))
	}
	return k, nil
}

// joseError strips go-jose's package prefix.
func joseError(err error) string {
	return strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
}

func parsePEM(data []byte) (*rsa.PrivateKey, error) {
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" { // written before the key by openssl ecparam
			continue
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, errors.New("malformed PEM: no complete PEM block found")
	}
	// A combined file (certificate + key) is fine: use the private key.
	var keyBlocks []*pem.Block
	for _, b := range blocks {
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			keyBlocks = append(keyBlocks, b)
		}
	}
	if len(keyBlocks) > 1 {
		return nil, fmt.Errorf("PEM holds %d private keys; keep only the assertion signing key", len(keyBlocks))
	}
	b := blocks[0]
	if len(keyBlocks) == 1 {
		b = keyBlocks[0]
	}

	//lint:ignore SA1019 deprecated because legacy PEM encryption is insecure; here it only detects such a key, to refuse it.
	if x509.IsEncryptedPEMBlock(b) || b.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("PEM key is encrypted; tokend needs it unencrypted (e.g. openssl pkey -in KEY -out KEY.plain), protected by file permissions")
	}
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed PKCS#1 PEM (RSA PRIVATE KEY): %s", x509Error(err))
		}
		return rsaKey("PKCS#1 PEM", k)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed PKCS#8 PEM (PRIVATE KEY): %s", x509Error(err))
		}
		return rsaKey("PKCS#8 PEM", k)
	case "EC PRIVATE KEY":
		return nil, errors.New("PEM is an EC private key; tokend needs an RSA private key (LINE assertions are RS256)")
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, errors.New("PEM is a public key; tokend needs the private key")
	case "CERTIFICATE":
		return nil, errors.New("PEM is a certificate; tokend needs the private key")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("PEM is an OpenSSH private key, which is not supported; convert it to PKCS#8 (ssh-keygen -p -m PKCS8 -f KEY)")
	}
	return nil, fmt.Errorf("PEM block type %q is not a private key tokend reads (want RSA PRIVATE KEY or PRIVATE KEY)", clean(b.Type))
}

// x509Error describes a DER parse failure for a user: crypto/x509's hints
// name Go functions, and asn1 errors dump Go struct tags.
func x509Error(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "use ParsePKCS8PrivateKey"):
		return "the block holds a PKCS#8 key; its BEGIN line should say PRIVATE KEY"
	case strings.Contains(s, "use ParsePKCS1PrivateKey"):
		return "the block holds a PKCS#1 key; its BEGIN line should say RSA PRIVATE KEY"
	case strings.Contains(s, "use ParseECPrivateKey"):
		return "the block holds an EC private key; tokend needs an RSA private key"
	case strings.HasPrefix(s, "asn1:"), strings.Contains(s, "asn1:"):
		return "invalid DER encoding"
	}
	s = strings.TrimPrefix(s, "x509: ")
	if i := strings.Index(s, " (use "); i >= 0 {
		s = s[:i]
	}
	return s
}

// rsaKey checks that key (from the named format) is an RSA private key of
// at least minKeyBits; its parser has validated it.
func rsaKey(format string, key any) (*rsa.PrivateKey, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := bitLen(k); bits < minKeyBits {
			return nil, fmt.Errorf("%s RSA key is %d bits; tokend needs at least %d", format, bits, minKeyBits)
		}
		return k, nil // validated by its parser
	case *rsa.PublicKey:
		return nil, fmt.Errorf("%s is a public key; tokend needs the private key", format)
	case *ecdsa.PrivateKey:
		return nil, fmt.Errorf("%s is an EC private key (%s); tokend needs an RSA private key (LINE assertions are RS256)", format, k.Curve.Params().Name)
	case *ecdsa.PublicKey:
		return nil, fmt.Errorf("%s is an EC public key (%s); tokend needs an RSA private key", format, k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return nil, fmt.Errorf("%s is an Ed25519 private key; tokend needs an RSA private key (LINE assertions are RS256)", format)
	case ed25519.PublicKey:
		return nil, fmt.Errorf("%s is an Ed25519 public key; tokend needs an RSA private key", format)
	case *ecdh.PrivateKey:
		return nil, fmt.Errorf("%s is an X25519/ECDH private key; tokend needs an RSA private key", format)
	case []byte:
		return nil, fmt.Errorf("%s is a symmetric (oct) key; tokend needs an RSA private key", format)
	}
	return nil, fmt.Errorf("%s holds a %T; tokend needs an RSA private key", format, key)
}

// GenerateKey returns a new 2048-bit RSA assertion signing key.
func GenerateKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, minKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// MarshalPrivateJWK encodes k as a private JWK (kty RSA, alg RS256, use sig,
// no kid) that ParsePrivateKey reads back.
func MarshalPrivateJWK(k *rsa.PrivateKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("marshal private JWK: no key")
	}
	if len(k.Primes) != 2 {
		return nil, fmt.Errorf("marshal private JWK: key has %d primes, JWK needs 2", len(k.Primes))
	}
	b, err := jose.JSONWebKey{Key: k, Algorithm: "RS256", Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal private JWK: %w", err)
	}
	return b, nil
}

// MarshalPublicJWK encodes k as the public JWK to register in the LINE
// Developers Console: kty RSA, alg RS256, use sig and no kid (LINE refuses
// a key that has one).
func MarshalPublicJWK(k *rsa.PublicKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("marshal public JWK: no key")
	}
	b, err := jose.JSONWebKey{Key: k, Algorithm: "RS256", Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal public JWK: %w", err)
	}
	return b, nil
}

// WriteNewKey generates a key, writes its private JWK to path (a new file,
// mode 0600; an existing file is never overwritten) and returns the public
// JWK to register with LINE.
func WriteNewKey(path string) (publicJWK []byte, err error) {
	if path == "" {
		return nil, errors.New("write new key: empty path")
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("write new key: %s already exists; refusing to overwrite", path)
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("write new key: %w", err)
	}
	priv, err := MarshalPrivateJWK(k)
	if err != nil {
		return nil, fmt.Errorf("write new key: %w", err)
	}
	pub, err := MarshalPublicJWK(&k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("write new key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("write new key: %s already exists; refusing to overwrite", path)
	}
	if err != nil {
		return nil, fmt.Errorf("write new key: %w", err)
	}
	_, err = f.Write(append(priv, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("write new key: %w", err)
	}
	return pub, nil
}
