package oauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// testKeySet is the fixed set of keys every test in the package shares:
// RSA generation is slow, especially under -race, so it happens once.
type testKeySet struct {
	rsaA, rsaB *rsa.PrivateKey   // 2048-bit
	rsa1024    *rsa.PrivateKey   // too small
	ec         *ecdsa.PrivateKey // P-256
	ed         ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keysVal  testKeySet
	keysErr  error
)

func testKeys(t testing.TB) testKeySet {
	t.Helper()
	keysOnce.Do(func() {
		var k testKeySet
		if k.rsaA, keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
			return
		}
		if k.rsaB, keysErr = rsa.GenerateKey(rand.Reader, 2048); keysErr != nil {
			return
		}
		if k.rsa1024, keysErr = rsa.GenerateKey(rand.Reader, 1024); keysErr != nil {
			return
		}
		if k.ec, keysErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); keysErr != nil {
			return
		}
		if _, k.ed, keysErr = ed25519.GenerateKey(rand.Reader); keysErr != nil {
			return
		}
		keysVal = k
	})
	if keysErr != nil {
		t.Fatalf("generate test keys: %v", keysErr)
	}
	return keysVal
}

func pemPKCS1(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func pkcs8DER(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	return der
}

func pemPKCS8(t testing.TB, k any) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8DER(t, k)})
}

func mustPrivateJWK(t testing.TB, k *rsa.PrivateKey) []byte {
	t.Helper()
	b, err := MarshalPrivateJWK(k)
	if err != nil {
		t.Fatalf("MarshalPrivateJWK: %v", err)
	}
	return b
}

var secretish = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}`)

// assertNoLeak fails if msg contains any long base64-ish run of input:
// error text must describe key material and credentials, never quote them.
func assertNoLeak(t testing.TB, msg string, input []byte) {
	t.Helper()
	for _, s := range secretish.FindAllString(string(input), -1) {
		if strings.HasPrefix(s, "-----") {
			continue
		}
		for i := 0; i+16 <= len(s); i += 8 {
			if strings.Contains(msg, s[i:i+16]) {
				t.Fatalf("message %q quotes input material %q", msg, s[i:i+16])
			}
		}
	}
}
