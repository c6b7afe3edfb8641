package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/store"
)

// TestStoreFileName: the validator's name for the store's file is the
// store's.
func TestStoreFileName(t *testing.T) {
	if storeFileName != store.FileName {
		t.Errorf("storeFileName = %q, store.FileName = %q", storeFileName, store.FileName)
	}
}

// TestOutputOverwritesOwnFile: an output may not name a file tokend
// reads or keeps (its key, secret, store, socket or config file), however
// the path is spelled, in whichever channel; the error names the output's
// key, the path as written and what it would overwrite, never a secret.
func TestOutputOverwritesOwnFile(t *testing.T) {
	dir, creds := t.TempDir(), t.TempDir()
	const secret = "s3cret-value-in-file"
	for _, d := range []string{dir, creds} {
		if err := os.WriteFile(filepath.Join(d, "shop.secret"), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const (
		shop = `  - {id: "1000", name: shop-bot, key_id: k, private_key_file: keys/shop.jwk, channel_secret_file: shop.secret, outputs: [{path: %s}]}
`
		news = `  - {id: "1001", key_id: k, private_key_file: /etc/keys/news.jwk, channel_secret: inline-s3cret, outputs: [{path: %s}]}
`
	)
	channels := func(shopOut, newsOut string) string {
		return "channels:\n" + strings.Replace(shop, "%s", shopOut, 1) + strings.Replace(news, "%s", newsOut, 1)
	}
	top := "state_dir: /var/lib/tokend\nsocket: {path: /run/tokend/tokend.sock}\n"
	tests := []struct {
		name, src string
		env       map[string]string
		want      string
	}{
		{"own private key, relative", top + channels("keys/shop.jwk", "/out/news"), nil,
			`channels[0].outputs[0].path: "keys/shop.jwk": is the private key file of channel shop-bot (channels[0].private_key_file); the output would overwrite the key: choose another path`},
		{"another channel's private key, spelt otherwise", top + channels("/etc/keys/../keys/./news.jwk", "/out/news"), nil,
			`channels[0].outputs[0].path: "/etc/keys/../keys/./news.jwk": is the private key file of channel 1001 (channels[1].private_key_file); the output would overwrite the key: choose another path`},
		{"a later channel's output on an earlier channel's key", top + channels("/out/shop", dir+"/keys/shop.jwk"), nil,
			`channels[1].outputs[0].path: "` + dir + `/keys/shop.jwk": is the private key file of channel shop-bot (channels[0].private_key_file); the output would overwrite the key: choose another path`},
		{"channel secret file", top + channels("/out/shop", "shop.secret"), nil,
			`channels[1].outputs[0].path: "shop.secret": is the channel secret file of channel shop-bot (channels[0].channel_secret_file); the output would overwrite the secret: choose another path`},
		{"channel secret file under $CREDENTIALS_DIRECTORY", top + channels(creds+"/shop.secret", "/out/news"),
			map[string]string{"CREDENTIALS_DIRECTORY": creds},
			`channels[0].outputs[0].path: "` + creds + `/shop.secret": is the channel secret file of channel shop-bot (channels[0].channel_secret_file); the output would overwrite the secret: choose another path`},
		{"store", top + channels("/out/shop", "/var/lib/tokend/tokend.db"), nil,
			`channels[1].outputs[0].path: "/var/lib/tokend/tokend.db": is tokend's store (tokend.db in state_dir /var/lib/tokend); the output would overwrite every token record: choose another path`},
		{"store in $STATE_DIRECTORY", "socket: {path: ''}\n" + channels("/srv/state/tokend.db", "/out/news"),
			map[string]string{"STATE_DIRECTORY": "/srv/state/:/srv/other"},
			`channels[0].outputs[0].path: "/srv/state/tokend.db": is tokend's store (tokend.db in state_dir /srv/state); the output would overwrite every token record: choose another path`},
		{"socket", top + channels("/run/tokend/tokend.sock", "/out/news"), nil,
			`channels[0].outputs[0].path: "/run/tokend/tokend.sock": is socket.path, tokend's socket; the output would replace it: choose another path`},
		{"default socket in $RUNTIME_DIRECTORY", "state_dir: /var/lib/tokend\n" + channels("/out/shop", "/run/x/tokend.sock"),
			map[string]string{"RUNTIME_DIRECTORY": "/run/x"},
			`channels[1].outputs[0].path: "/run/x/tokend.sock": is socket.path, tokend's socket; the output would replace it: choose another path`},
		{"two outputs on one key: both told why", top + channels("keys/shop.jwk", "keys/shop.jwk"), nil,
			`channels[0].outputs[0].path: "keys/shop.jwk": is the private key file of channel shop-bot (channels[0].private_key_file); the output would overwrite the key: choose another path` + "\n" +
				`channels[1].outputs[0].path: "keys/shop.jwk": is the private key file of channel shop-bot (channels[0].private_key_file); the output would overwrite the key: choose another path`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.src), ParseOptions{Dir: dir, LookupEnv: fakeEnv(tc.env)})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("\n got %v\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("a secret is in the error: %v", err)
			}
		})
	}

	t.Run("config file", func(t *testing.T) {
		file := filepath.Join(dir, "config.yaml")
		load := func(src string) error {
			if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file)
			return err
		}
		err := load(top + channels("/out/shop", "./config.yaml"))
		want := `channels[1].outputs[0].path: "./config.yaml": is the config file itself; the output would overwrite it: choose another path`
		if err == nil || err.Error() != want {
			t.Fatalf("\n got %v\nwant %s", err, want)
		}
		if err := load(top + channels("/out/shop", "config.json")); err != nil {
			t.Errorf("an output beside the config file: %v", err)
		}
	})
}

// TestOutputsBesideOwnFiles: outputs next to tokend's files, in the same
// directories, are fine, and so are tokend's files named twice (two
// channels sharing a key or a secret file).
func TestOutputsBesideOwnFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop.secret"), []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `state_dir: /var/lib/tokend
socket: {path: /run/tokend/tokend.sock}
channels:
  - id: "1000"
    name: shop-bot
    key_id: k
    private_key_file: keys/shop.jwk
    channel_secret_file: shop.secret
    outputs: [{path: keys/shop.token}, {path: shop.secret.json, format: json}, {path: /run/tokend/shop.token}]
  - id: "1001"
    key_id: k
    private_key_file: keys/shop.jwk
    channel_secret_file: shop.secret
    outputs: [{path: /var/lib/tokend/news.token}, {path: /var/lib/tokend/tokend.db.token}]
`
	cfg, err := Parse(strings.NewReader(src), ParseOptions{Dir: dir, LookupEnv: fakeEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Channels[0].Outputs[0].Path, filepath.Join(dir, "keys/shop.token"); got != want {
		t.Errorf("output %s, want %s", got, want)
	}
}
