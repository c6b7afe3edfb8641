package linefake

import (
	"net/http"
	"net/url"
	"time"
)

// scope is what verify reports for every token.
const scope = "profile chat_message.write"

type issueResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
	KeyID       string `json:"key_id,omitempty"`
}

type verifyResponse struct {
	ClientID  string `json:"client_id"`
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
}

// issueV21 is POST /oauth2/v2.1/token.
func (s *Server) issueV21(form url.Values) response {
	if r := checkGrantType(form); r != nil {
		return *r
	}
	if r := checkAssertionParams(form); r != nil {
		return *r
	}
	channelID, claims, r := s.verifyAssertion(form.Get("client_assertion"))
	if r != nil {
		return *r
	}
	secs, r := tokenExp(claims)
	if r != nil {
		return *r
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	ch := s.channelLocked(channelID)
	if r := ch.rateLimitedLocked(EndpointIssueV21, now); r != nil {
		return *r
	}
	valid := len(ch.validLocked(KindV21, now))
	if valid >= MaxValidTokens {
		return messageResponse(http.StatusBadRequest, msgTokenLimit)
	}
	t := s.issueLocked(ch, KindV21, now, time.Duration(secs)*time.Second)
	ch.maxValid = max(ch.maxValid, valid+1)
	return jsonResponse(http.StatusOK, issueResponse{
		AccessToken: t.AccessToken, ExpiresIn: secs, TokenType: "Bearer", KeyID: t.KeyID,
	})
}

// keyIDsV21 is GET /oauth2/v2.1/tokens/kid.
func (s *Server) keyIDsV21(form url.Values) response {
	if r := checkAssertionParams(form); r != nil {
		return *r
	}
	channelID, _, r := s.verifyAssertion(form.Get("client_assertion"))
	if r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.channelLocked(channelID).rateLimitedLocked(EndpointKeyIDsV21, s.clock.Now()); r != nil {
		return *r
	}
	return jsonResponse(http.StatusOK, map[string][]string{"kids": s.validKeyIDsLocked(channelID)})
}

// revokeV21 is POST /oauth2/v2.1/revoke.
func (s *Server) revokeV21(form url.Values) response {
	if r := requireParams(form, "client_id", "client_secret", "access_token"); r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, r := s.checkSecretLocked(form.Get("client_id"), form.Get("client_secret"))
	if r != nil {
		return *r
	}
	if r := ch.rateLimitedLocked(EndpointRevokeV21, s.clock.Now()); r != nil {
		return *r
	}
	tok := form.Get("access_token")
	if !isJWS(tok) {
		return errorResponse(http.StatusBadRequest, "invalid_request", msgNotJWS)
	}
	t, ok := s.lookupLocked(tok)
	if !ok || t.Kind != KindV21 || !t.validAt(s.clock.Now()) {
		return emptyResponse() // already invalid (or never valid): not an error
	}
	if t.channelID != ch.id {
		return errorResponse(http.StatusBadRequest, "invalid_client", "access token was not issued to client_id")
	}
	t.Revoked = true
	return emptyResponse()
}

// verifyV21 is GET /oauth2/v2.1/verify; it accepts v2.1 and stateless tokens.
func (s *Server) verifyV21(form url.Values) response {
	return s.verify(form, KindV21, KindStateless)
}

// verifyShort is POST /v2/oauth/verify; it accepts short-lived tokens.
func (s *Server) verifyShort(form url.Values) response {
	return s.verify(form, KindShortLived)
}

func (s *Server) verify(form url.Values, kinds ...string) response {
	if r := requireParams(form, "access_token"); r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	t, ok := s.lookupLocked(form.Get("access_token"))
	if !ok || !kindIn(t.Kind, kinds) || t.Revoked {
		return errorResponse(http.StatusBadRequest, "invalid_request", msgInvalidToken)
	}
	if !now.Before(t.ExpiresAt) {
		return errorResponse(http.StatusBadRequest, "invalid_request", msgTokenExpired)
	}
	return jsonResponse(http.StatusOK, verifyResponse{
		ClientID:  t.channelID,
		ExpiresIn: int64(t.ExpiresAt.Sub(now) / time.Second),
		Scope:     scope,
	})
}

func kindIn(k string, kinds []string) bool {
	for _, want := range kinds {
		if k == want {
			return true
		}
	}
	return false
}

// issueShort is POST /v2/oauth/accessToken.
func (s *Server) issueShort(form url.Values) response {
	if r := checkGrantType(form); r != nil {
		return *r
	}
	if r := requireParams(form, "client_id", "client_secret"); r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, r := s.checkSecretLocked(form.Get("client_id"), form.Get("client_secret"))
	if r != nil {
		return *r
	}
	now := s.clock.Now()
	if r := ch.rateLimitedLocked(EndpointIssueShort, now); r != nil {
		return *r
	}
	if valid := ch.validLocked(KindShortLived, now); len(valid) >= MaxValidTokens {
		// LINE revokes the oldest valid token(s) to make room.
		for _, old := range valid[:len(valid)-MaxValidTokens+1] {
			old.Revoked = true
		}
	}
	t := s.issueLocked(ch, KindShortLived, now, ShortLivedTTL)
	return jsonResponse(http.StatusOK, issueResponse{
		AccessToken: t.AccessToken, ExpiresIn: int64(ShortLivedTTL / time.Second), TokenType: "Bearer",
	})
}

// revokeShort is POST /v2/oauth/revoke: it revokes a valid short-lived
// token and answers 200 for anything else.
func (s *Server) revokeShort(form url.Values) response {
	if r := requireParams(form, "access_token"); r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.lookupLocked(form.Get("access_token")); ok && t.Kind == KindShortLived {
		t.Revoked = true
	}
	return emptyResponse()
}

// issueStateless is POST /oauth2/v3/token, by assertion or by secret.
func (s *Server) issueStateless(form url.Values) response {
	if r := checkGrantType(form); r != nil {
		return *r
	}
	var channelID string
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		if r := checkAssertionParams(form); r != nil {
			return *r
		}
		id, _, r := s.verifyAssertion(form.Get("client_assertion"))
		if r != nil {
			return *r
		}
		channelID = id
	} else if r := requireParams(form, "client_id", "client_secret"); r != nil {
		return *r
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var ch *channel
	if channelID != "" {
		ch = s.channelLocked(channelID)
	} else {
		var r *response
		if ch, r = s.checkSecretLocked(form.Get("client_id"), form.Get("client_secret")); r != nil {
			return *r
		}
	}
	if r := ch.rateLimitedLocked(EndpointIssueStateless, s.clock.Now()); r != nil {
		return *r
	}
	t := s.issueStatelessLocked(ch, s.clock.Now())
	return jsonResponse(http.StatusOK, issueResponse{
		AccessToken: t.AccessToken, ExpiresIn: int64(StatelessTTL / time.Second), TokenType: "Bearer",
	})
}
