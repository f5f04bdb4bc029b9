using System.ComponentModel.DataAnnotations;

namespace Lamina.Server.Hosting;

/// <summary>Server-wide settings. Bound from the command line (<c>./lamina serve</c>) and the <c>Lamina</c> configuration section.</summary>
public sealed class LaminaOptions
{
    /// <summary>Region used in every ARN. Default <c>us-east-1</c>, as the AWS tools assume.</summary>
    [Required]
    public string Region { get; set; } = "us-east-1";

    /// <summary>Account id used in every ARN. Default <c>000000000000</c>, the local-tools convention.</summary>
    [RegularExpression(@"^\d{12}$")]
    public string AccountId { get; set; } = "000000000000";

    /// <summary>Where state (SQLite), code blobs and sandbox scratch space live. Default <c>~/.lamina</c>.</summary>
    [Required]
    public string DataDirectory { get; set; } = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lamina");

    /// <summary>Address to listen on. Default loopback: without credentials nobody else may reach the API.</summary>
    [Required]
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on; 0 picks a free one (printed at start). Default 9000.</summary>
    [Range(0, 65535)]
    public int Port { get; set; } = 9000;

    /// <summary>
    /// Directory holding Lamina's runtime bootstraps, mounted at <c>/var/runtime</c>. Default: <c>runtimes/</c> next to the server binary.
    /// </summary>
    public string RuntimesDirectory { get; set; } = Path.Combine(AppContext.BaseDirectory, "runtimes");

    /// <summary>How long an idle environment stays warm before it is shut down. Default 10 minutes (Lambda keeps idle environments for minutes, not seconds).</summary>
    public TimeSpan IdleEnvironmentLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Whether functions get outbound network (through pasta, ~80 ms per cold start). Default on, as on Lambda;
    /// a function turns it off with <c>LAMINA_NETWORK=none</c>, an operator for all with <c>--function-network off</c>.
    /// </summary>
    public bool FunctionNetwork { get; set; } = true;

    /// <summary>Bound on the Init phase (extensions, runtime, handler). Lambda's value is 10 s.</summary>
    public TimeSpan InitTimeout { get; set; } = TimeSpan.FromSeconds(10);

    public string FunctionArn(string name) => $"arn:aws:lambda:{Region}:{AccountId}:function:{name}";
}
