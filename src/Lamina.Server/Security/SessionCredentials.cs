using System.Security.Cryptography;

namespace Lamina.Server.Security;

/// <summary>
/// An execution environment's role credentials (<c>AWS_ACCESS_KEY_ID</c>, <c>AWS_SECRET_ACCESS_KEY</c>,
/// <c>AWS_SESSION_TOKEN</c>), as Lambda gives each environment. Scoped: they exist only in memory, are accepted only on
/// the connections of the environment they were issued to (its Runtime API socket, where <c>AWS_ENDPOINT_URL</c>
/// points), act for the function's account on the Lambda and Logs APIs and nothing else, and expire
/// (<see cref="Lifetime"/>; the pool retires an environment before its credentials do).
/// </summary>
internal sealed record SessionCredentials(string AccessKeyId, string SecretAccessKey, string SessionToken, DateTimeOffset Expiration)
{
    /// <summary>How long credentials are valid: Lambda's role sessions last hours, not the environment's whole life.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(12);

    /// <summary>An environment is retired this long before its credentials expire, so no invocation runs with stale ones.</summary>
    public static readonly TimeSpan RenewalMargin = TimeSpan.FromHours(1);

    public static SessionCredentials Issue(DateTimeOffset now)
    {
        const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const string SecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        // ASIA…: the prefix AWS gives temporary credentials, so tools that look at it treat these alike.
        return new SessionCredentials("ASIA" + RandomNumberGenerator.GetString(Alphabet, 16), RandomNumberGenerator.GetString(SecretAlphabet, 40),
            Convert.ToBase64String(RandomNumberGenerator.GetBytes(96)), now + Lifetime);
    }

    /// <summary>The key SigV4 verifies a request of the environment with.</summary>
    public AccessKey AsKey(string accountId) => new(AccessKeyId, SecretAccessKey, accountId) { SessionToken = SessionToken, Expiration = Expiration };

    public override string ToString() => AccessKeyId; // never the secret or the token
}
