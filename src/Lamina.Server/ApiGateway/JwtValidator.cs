using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Lamina.Server.Diagnostics;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// JWT authorizers of HTTP APIs (as API Gateway validates): the token's RSA signature (RS256/384/512) against the
/// issuer's keys — found through <c>{issuer}/.well-known/openid-configuration</c>'s <c>jwks_uri</c>, fetched over HTTP
/// and cached — then <c>iss</c>, <c>aud</c> or <c>client_id</c>, <c>exp</c>, <c>nbf</c> and <c>iat</c>. .NET's own
/// RSA does the cryptography; no token library.
/// </summary>
internal sealed partial class JwtValidator : IDisposable
{
    /// <summary>How long an issuer's keys are used before they are fetched again.</summary>
    private static readonly TimeSpan KeysLifetime = TimeSpan.FromMinutes(10);

    /// <summary>A token with a key id the cached keys lack fetches them again, at most this often (a rotated key appears quickly; junk ids cannot hammer the issuer).</summary>
    private static readonly TimeSpan RefetchInterval = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly ConcurrentDictionary<string, IssuerKeys> _issuers = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly ILogger<JwtValidator> _logger;

    public JwtValidator(TimeProvider time, ILogger<JwtValidator> logger)
    {
        _time = time;
        _logger = logger;
    }

    /// <summary>Validates <paramref name="token"/> for <paramref name="issuer"/> and <paramref name="audience"/>; the claims and scopes when it is valid.</summary>
    public async Task<JwtResult> ValidateAsync(string token, string issuer, IReadOnlyList<string>? audience, CancellationToken cancellationToken)
    {
        var parts = token.Split('.');
        if (parts.Length != 3)
        {
            return JwtResult.Invalid("the token is not a JWT (header.payload.signature)");
        }
        JsonElement header, payload;
        byte[] signature;
        try
        {
            header = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[0])).RootElement.Clone();
            payload = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1])).RootElement.Clone();
            signature = Base64Url.DecodeFromChars(parts[2]);
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return JwtResult.Invalid("the token cannot be decoded");
        }
        if (header.ValueKind != JsonValueKind.Object || payload.ValueKind != JsonValueKind.Object)
        {
            return JwtResult.Invalid("the token's header and payload must be JSON objects");
        }
        var algorithm = header.TryGetProperty("alg", out var alg) ? alg.GetString() : null;
        var hash = algorithm switch
        {
            "RS256" => HashAlgorithmName.SHA256,
            "RS384" => HashAlgorithmName.SHA384,
            "RS512" => HashAlgorithmName.SHA512,
            _ => default,
        };
        if (hash == default)
        {
            return JwtResult.Invalid($"the token's algorithm {algorithm ?? "(none)"} is not supported: only RSA (RS256, RS384, RS512) is");
        }
        if (!header.TryGetProperty("kid", out var kidElement) || kidElement.ValueKind != JsonValueKind.String)
        {
            return JwtResult.Invalid("the token's header has no kid");
        }
        var kid = kidElement.GetString()!;
        var key = await FindKeyAsync(issuer, kid, cancellationToken);
        if (key is null)
        {
            return JwtResult.Invalid($"no key {kid} in the issuer's JWKS");
        }
        using (var rsa = RSA.Create())
        {
            rsa.ImportParameters(key.Value);
            if (!rsa.VerifyData(Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]), signature, hash, RSASignaturePadding.Pkcs1))
            {
                return JwtResult.Invalid("the token's signature does not verify");
            }
        }
        if (Check(payload, issuer, audience, _time.GetUtcNow()) is { } claimError)
        {
            return JwtResult.Invalid(claimError);
        }
        var claims = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var claim in payload.EnumerateObject())
        {
            claims[claim.Name] = ClaimText.Of(claim.Value);
        }
        return new JwtResult(true, null, claims, Scopes(payload));
    }

    /// <summary>Null when the registered claims hold, else what fails.</summary>
    internal static string? Check(JsonElement payload, string issuer, IReadOnlyList<string>? audience, DateTimeOffset now)
    {
        if (!payload.TryGetProperty("iss", out var iss) || iss.ValueKind != JsonValueKind.String || iss.GetString() != issuer)
        {
            return "the token's iss is not the authorizer's issuer";
        }
        if (audience is { Count: > 0 })
        {
            var audiences = new List<string>();
            if (payload.TryGetProperty("aud", out var aud))
            {
                if (aud.ValueKind == JsonValueKind.String)
                {
                    audiences.Add(aud.GetString()!);
                }
                else if (aud.ValueKind == JsonValueKind.Array)
                {
                    audiences.AddRange(aud.EnumerateArray().Where(static a => a.ValueKind == JsonValueKind.String).Select(static a => a.GetString()!));
                }
            }
            if (payload.TryGetProperty("client_id", out var clientId) && clientId.ValueKind == JsonValueKind.String)
            {
                audiences.Add(clientId.GetString()!);
            }
            if (!audiences.Any(audience.Contains))
            {
                return "the token's aud (or client_id) is not one of the authorizer's audiences";
            }
        }
        var seconds = now.ToUnixTimeSeconds();
        if (!payload.TryGetProperty("exp", out var exp) || !exp.TryGetDouble(out var expires) || expires <= seconds)
        {
            return "the token has expired (or has no exp)";
        }
        if (payload.TryGetProperty("nbf", out var nbf) && (!nbf.TryGetDouble(out var notBefore) || notBefore > seconds))
        {
            return "the token is not valid yet (nbf)";
        }
        if (payload.TryGetProperty("iat", out var iat) && (!iat.TryGetDouble(out var issued) || issued > seconds))
        {
            return "the token was issued in the future (iat)";
        }
        return null;
    }

    /// <summary>The token's scopes: <c>scope</c> (space-separated) or <c>scp</c> (a string or a list).</summary>
    internal static List<string> Scopes(JsonElement payload)
    {
        if (payload.TryGetProperty("scope", out var scope) && scope.ValueKind == JsonValueKind.String)
        {
            return [.. scope.GetString()!.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        }
        if (payload.TryGetProperty("scp", out var scp))
        {
            if (scp.ValueKind == JsonValueKind.String)
            {
                return [.. scp.GetString()!.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
            }
            if (scp.ValueKind == JsonValueKind.Array)
            {
                return [.. scp.EnumerateArray().Where(static s => s.ValueKind == JsonValueKind.String).Select(static s => s.GetString()!)];
            }
        }
        return [];
    }

    private async Task<RSAParameters?> FindKeyAsync(string issuer, string kid, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        if (_issuers.TryGetValue(issuer, out var cached))
        {
            if (now - cached.Fetched < KeysLifetime && cached.Keys.TryGetValue(kid, out var key))
            {
                return key;
            }
            if (now - cached.Fetched < RefetchInterval)
            {
                return null;
            }
        }
        var keys = await FetchAsync(issuer, cancellationToken);
        _issuers[issuer] = new IssuerKeys(keys, now);
        return keys.TryGetValue(kid, out var found) ? found : null;
    }

    /// <summary>The issuer's RSA keys by id: its OpenID configuration's <c>jwks_uri</c>, or <c>/.well-known/jwks.json</c> without one.</summary>
    private async Task<Dictionary<string, RSAParameters>> FetchAsync(string issuer, CancellationToken cancellationToken)
    {
        var keys = new Dictionary<string, RSAParameters>(StringComparer.Ordinal);
        var baseUrl = issuer.TrimEnd('/');
        try
        {
            var jwksUri = $"{baseUrl}/.well-known/jwks.json";
            using (var discovery = await _http.GetAsync($"{baseUrl}/.well-known/openid-configuration", cancellationToken))
            {
                if (discovery.IsSuccessStatusCode)
                {
                    using var document = JsonDocument.Parse(await discovery.Content.ReadAsByteArrayAsync(cancellationToken));
                    if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("jwks_uri", out var uri)
                        && uri.ValueKind == JsonValueKind.String)
                    {
                        jwksUri = uri.GetString()!;
                    }
                }
            }
            using var response = await _http.GetAsync(jwksUri, cancellationToken);
            response.EnsureSuccessStatusCode();
            using var jwks = JsonDocument.Parse(await response.Content.ReadAsByteArrayAsync(cancellationToken));
            if (jwks.RootElement.ValueKind != JsonValueKind.Object || !jwks.RootElement.TryGetProperty("keys", out var list) || list.ValueKind != JsonValueKind.Array)
            {
                Log.JwksFailed(_logger, issuer, "the JWKS has no keys array");
                return keys;
            }
            foreach (var key in list.EnumerateArray())
            {
                if (key.ValueKind == JsonValueKind.Object && Text(key, "kty") == "RSA" && Text(key, "kid") is { } kid && Text(key, "n") is { } n && Text(key, "e") is { } e
                    && Text(key, "use") is null or "sig")
                {
                    keys[kid] = new RSAParameters { Modulus = Base64Url.DecodeFromChars(n), Exponent = Base64Url.DecodeFromChars(e) };
                }
            }
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or FormatException or TaskCanceledException)
        {
            Log.JwksFailed(_logger, issuer, e.Message);
        }
        return keys;

        static string? Text(JsonElement element, string name) =>
            element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
    }

    public void Dispose() => _http.Dispose();

    private sealed record IssuerKeys(Dictionary<string, RSAParameters> Keys, DateTimeOffset Fetched);

    private static partial class Log
    {
        [LoggerMessage(EventIds.ApiGatewayJwksFailed, LogLevel.Warning, "The keys of JWT issuer {Issuer} could not be fetched: {Reason}; its tokens are refused until they can")]
        public static partial void JwksFailed(ILogger logger, string issuer, string reason);
    }
}

/// <summary>A JWT's validation: valid with its claims (as text) and scopes, or the reason it is not.</summary>
internal sealed record JwtResult(bool Valid, string? Error, Dictionary<string, string>? Claims, List<string>? Scopes)
{
    public static JwtResult Invalid(string reason) => new(false, reason, null, null);
}
