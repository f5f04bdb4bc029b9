using System.Collections.Immutable;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;

namespace Lamina.Server.Lambda;

/// <summary>
/// Lambda's control plane in <c>lamina.db</c>: functions, their tags, versions, aliases and per-qualifier settings
/// (concurrency, event invoke configs, policies, URLs), and layers. Every statement on those tables is here; the
/// tables themselves are created by the file's one schema history (<see cref="Database"/>). Writes are durable
/// when they return (the file is <c>synchronous=FULL</c>).
/// </summary>
internal sealed class LambdaStore(Database database)
{
    // The node's file, or on a cluster node the cluster's PostgreSQL: the same statements on both.
    private DbConnection Open() => database.OpenShared();

    /// <summary>The database the statements run on (a cluster's registries lock and announce through it).</summary>
    public Database Database => database;

    /// <summary>
    /// Every function with its published versions and aliases, for the registry at startup; or, with
    /// <paramref name="only"/>, that one function (an empty list when it does not exist), when another node changed it.
    /// </summary>
    public List<FunctionEntry> LoadFunctionEntries(string? only = null)
    {
        using var connection = Open();
        var entries = new Dictionary<string, FunctionEntry>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT config_json, last_version, reserved_concurrency FROM functions WHERE CAST(@only AS TEXT) IS NULL OR name = @only ORDER BY name;";
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var config = DeserializeConfig(reader.GetString(0));
                entries[config.Name] = new FunctionEntry
                {
                    LatestConfig = config,
                    LastVersion = reader.GetInt32(1),
                    ReservedConcurrency = reader.IsDBNull(2) ? null : reader.GetInt32(2),
                };
            }
        }

        var versions = new Dictionary<string, ImmutableSortedDictionary<int, PublishedVersion>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT function_name, version, source_revision_id, config_json FROM function_versions WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;";
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue; // an orphan of a file written without foreign keys; the function is gone
                }
                if (!versions.TryGetValue(name, out var builder))
                {
                    versions[name] = builder = ImmutableSortedDictionary.CreateBuilder<int, PublishedVersion>();
                }
                builder[reader.GetInt32(1)] = new PublishedVersion(DeserializeConfig(reader.GetString(3)), reader.GetString(2));
            }
        }

        var aliases = new Dictionary<string, ImmutableSortedDictionary<string, AliasConfig>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT function_name, name, function_version, description, additional_version, additional_weight, revision_id
                  FROM function_aliases WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;
                """;
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue;
                }
                if (!aliases.TryGetValue(name, out var builder))
                {
                    aliases[name] = builder = ImmutableSortedDictionary.CreateBuilder<string, AliasConfig>(StringComparer.Ordinal);
                }
                var alias = new AliasConfig
                {
                    Name = reader.GetString(1),
                    FunctionVersion = reader.GetString(2),
                    Description = reader.GetString(3),
                    AdditionalVersion = reader.IsDBNull(4) ? null : reader.GetString(4),
                    AdditionalWeight = reader.IsDBNull(5) ? 0 : reader.GetDouble(5),
                    RevisionId = reader.GetString(6),
                };
                builder[alias.Name] = alias;
            }
        }

        var provisioned = new Dictionary<string, ImmutableSortedDictionary<string, ProvisionedConcurrencyConfig>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT function_name, qualifier, requested, modified_at FROM provisioned_concurrency WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;";
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue;
                }
                if (!provisioned.TryGetValue(name, out var builder))
                {
                    provisioned[name] = builder = ImmutableSortedDictionary.CreateBuilder<string, ProvisionedConcurrencyConfig>(StringComparer.Ordinal);
                }
                var config = new ProvisionedConcurrencyConfig(reader.GetString(1), reader.GetInt32(2),
                    DateTimeOffset.Parse(reader.GetString(3), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
                builder[config.Qualifier] = config;
            }
        }

        var eventInvoke = new Dictionary<string, ImmutableSortedDictionary<string, EventInvokeConfig>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT function_name, qualifier, maximum_retry_attempts, maximum_event_age, on_success, on_failure, modified_at
                  FROM event_invoke_configs WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;
                """;
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue;
                }
                if (!eventInvoke.TryGetValue(name, out var builder))
                {
                    eventInvoke[name] = builder = ImmutableSortedDictionary.CreateBuilder<string, EventInvokeConfig>(StringComparer.Ordinal);
                }
                var config = new EventInvokeConfig(reader.GetString(1),
                    reader.IsDBNull(2) ? null : reader.GetInt32(2),
                    reader.IsDBNull(3) ? null : reader.GetInt32(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    DateTimeOffset.Parse(reader.GetString(6), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
                builder[config.Qualifier] = config;
            }
        }

        var policies = new Dictionary<string, ImmutableSortedDictionary<string, ResourcePolicy>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT function_name, qualifier, revision_id, statements FROM function_policies WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;";
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue;
                }
                if (!policies.TryGetValue(name, out var builder))
                {
                    policies[name] = builder = ImmutableSortedDictionary.CreateBuilder<string, ResourcePolicy>(StringComparer.Ordinal);
                }
                var statements = JsonSerializer.Deserialize(reader.GetString(3), LaminaJsonContext.Default.ListPolicyStatement) ?? [];
                var policy = new ResourcePolicy(reader.GetString(1), reader.GetString(2), [.. statements]);
                builder[policy.Qualifier] = policy;
            }
        }

        var urls = new Dictionary<string, ImmutableSortedDictionary<string, FunctionUrlConfig>.Builder>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT function_name, qualifier, url_id, auth_type, cors, invoke_mode, created_at, modified_at FROM function_urls WHERE CAST(@only AS TEXT) IS NULL OR function_name = @only;";
            command.Add("@only", only);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var name = reader.GetString(0);
                if (!entries.ContainsKey(name))
                {
                    continue;
                }
                if (!urls.TryGetValue(name, out var builder))
                {
                    urls[name] = builder = ImmutableSortedDictionary.CreateBuilder<string, FunctionUrlConfig>(StringComparer.Ordinal);
                }
                var url = new FunctionUrlConfig(reader.GetString(1), reader.GetString(2), reader.GetString(3),
                    reader.IsDBNull(4) ? null : JsonSerializer.Deserialize(reader.GetString(4), LaminaJsonContext.Default.CorsDto),
                    reader.GetString(5),
                    DateTimeOffset.Parse(reader.GetString(6), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                    DateTimeOffset.Parse(reader.GetString(7), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
                builder[url.Qualifier] = url;
            }
        }

        var result = new List<FunctionEntry>(entries.Count);
        foreach (var entry in entries.Values)
        {
            result.Add(entry with
            {
                Versions = versions.TryGetValue(entry.Name, out var v) ? v.ToImmutable() : entry.Versions,
                Aliases = aliases.TryGetValue(entry.Name, out var a) ? a.ToImmutable() : entry.Aliases,
                ProvisionedConcurrency = provisioned.TryGetValue(entry.Name, out var p) ? p.ToImmutable() : entry.ProvisionedConcurrency,
                EventInvokeConfigs = eventInvoke.TryGetValue(entry.Name, out var e) ? e.ToImmutable() : entry.EventInvokeConfigs,
                Policies = policies.TryGetValue(entry.Name, out var r) ? r.ToImmutable() : entry.Policies,
                Urls = urls.TryGetValue(entry.Name, out var u) ? u.ToImmutable() : entry.Urls,
            });
        }
        return result;
    }

    /// <summary>Inserts a new function and its tags in one transaction. False if the name is taken.</summary>
    public async Task<bool> InsertFunctionAsync(FunctionConfig config, IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();

        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = """
                INSERT INTO functions (name, revision_id, code_sha256, config_json, created_at, modified_at)
                VALUES (@name, @revision, @sha, @json, @at, @at)
                ON CONFLICT (name) DO NOTHING;
                """;
            insert.Add("@name", config.Name);
            insert.Add("@revision", config.RevisionId);
            insert.Add("@sha", config.CodeSha256);
            insert.Add("@json", Serialize(config));
            insert.Add("@at", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
            if (await insert.ExecuteNonQueryAsync(cancellationToken) == 0)
            {
                return false;
            }
        }

        foreach (var (key, value) in tags)
        {
            await using var tag = connection.CreateCommand();
            tag.Transaction = transaction;
            tag.CommandText = "INSERT INTO function_tags (function_name, key, value) VALUES (@name, @key, @value);";
            tag.Add("@name", config.Name);
            tag.Add("@key", key);
            tag.Add("@value", value);
            await tag.ExecuteNonQueryAsync(cancellationToken);
        }

        // Durability checkpoint: the function exists once this commit returns (synchronous=FULL).
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>
    /// Replaces the configuration of <paramref name="config"/>'s function if its stored revision is still
    /// <paramref name="expectedRevisionId"/> (compare-and-swap). False if the row changed or is gone.
    /// </summary>
    public async Task<bool> UpdateFunctionAsync(FunctionConfig config, string expectedRevisionId, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE functions
               SET revision_id = @revision, code_sha256 = @sha, config_json = @json, modified_at = @at
             WHERE name = @name AND revision_id = @expected;
            """;
        command.Add("@name", config.Name);
        command.Add("@revision", config.RevisionId);
        command.Add("@sha", config.CodeSha256);
        command.Add("@json", Serialize(config));
        command.Add("@at", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
        command.Add("@expected", expectedRevisionId);
        // One statement is its own transaction; durable when it returns.
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>Sets or clears (null) a function's reserved concurrency. False if there is no such function.</summary>
    public async Task<bool> SetReservedConcurrencyAsync(string name, int? reserved, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = "UPDATE functions SET reserved_concurrency = @reserved WHERE name = @name;";
        command.Add("@name", name);
        command.Add("@reserved", reserved is { } value ? value : DBNull.Value);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>Sets (or, with null, removes) the provisioned concurrency of one version or alias.</summary>
    public async Task SetProvisionedConcurrencyAsync(string name, string qualifier, ProvisionedConcurrencyConfig? config, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = config is null
            ? "DELETE FROM provisioned_concurrency WHERE function_name = @name AND qualifier = @qualifier;"
            : """
              INSERT INTO provisioned_concurrency (function_name, qualifier, requested, modified_at)
              VALUES (@name, @qualifier, @requested, @modified)
              ON CONFLICT (function_name, qualifier) DO UPDATE SET requested = excluded.requested, modified_at = excluded.modified_at;
              """;
        command.Add("@name", name);
        command.Add("@qualifier", qualifier);
        if (config is not null)
        {
            command.Add("@requested", config.Requested);
            command.Add("@modified", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Sets (or, with null, removes) the asynchronous invocation settings of one qualifier.</summary>
    public async Task SetEventInvokeConfigAsync(string name, string qualifier, EventInvokeConfig? config, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = config is null
            ? "DELETE FROM event_invoke_configs WHERE function_name = @name AND qualifier = @qualifier;"
            : """
              INSERT INTO event_invoke_configs (function_name, qualifier, maximum_retry_attempts, maximum_event_age, on_success, on_failure, modified_at)
              VALUES (@name, @qualifier, @retries, @age, @success, @failure, @modified)
              ON CONFLICT (function_name, qualifier) DO UPDATE SET
                  maximum_retry_attempts = excluded.maximum_retry_attempts, maximum_event_age = excluded.maximum_event_age,
                  on_success = excluded.on_success, on_failure = excluded.on_failure, modified_at = excluded.modified_at;
              """;
        command.Add("@name", name);
        command.Add("@qualifier", qualifier);
        if (config is not null)
        {
            command.Add("@retries", config.MaximumRetryAttempts is { } retries ? retries : DBNull.Value);
            command.Add("@age", config.MaximumEventAgeInSeconds is { } age ? age : DBNull.Value);
            command.Add("@success", (object?)config.OnSuccessDestination ?? DBNull.Value);
            command.Add("@failure", (object?)config.OnFailureDestination ?? DBNull.Value);
            command.Add("@modified", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
        }
        // One statement is its own transaction; durable when it returns.
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Sets (or, with null, removes) the resource-based policy of one qualifier.</summary>
    public async Task SetPolicyAsync(string name, string qualifier, ResourcePolicy? policy, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = policy is null
            ? "DELETE FROM function_policies WHERE function_name = @name AND qualifier = @qualifier;"
            : """
              INSERT INTO function_policies (function_name, qualifier, revision_id, statements) VALUES (@name, @qualifier, @revision, @statements)
              ON CONFLICT (function_name, qualifier) DO UPDATE SET revision_id = excluded.revision_id, statements = excluded.statements;
              """;
        command.Add("@name", name);
        command.Add("@qualifier", qualifier);
        if (policy is not null)
        {
            command.Add("@revision", policy.RevisionId);
            command.Add("@statements", JsonSerializer.Serialize([.. policy.Statements], LaminaJsonContext.Default.ListPolicyStatement));
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Sets (or, with null, removes) the function URL of one qualifier.</summary>
    public async Task SetUrlAsync(string name, string qualifier, FunctionUrlConfig? url, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = url is null
            ? "DELETE FROM function_urls WHERE function_name = @name AND qualifier = @qualifier;"
            : """
              INSERT INTO function_urls (function_name, qualifier, url_id, auth_type, cors, invoke_mode, created_at, modified_at)
              VALUES (@name, @qualifier, @id, @auth, @cors, @mode, @created, @modified)
              ON CONFLICT (function_name, qualifier) DO UPDATE SET
                  auth_type = excluded.auth_type, cors = excluded.cors, invoke_mode = excluded.invoke_mode, modified_at = excluded.modified_at;
              """;
        command.Add("@name", name);
        command.Add("@qualifier", qualifier);
        if (url is not null)
        {
            command.Add("@id", url.UrlId);
            command.Add("@auth", url.AuthType);
            command.Add("@cors", url.Cors is null ? DBNull.Value : JsonSerializer.Serialize(url.Cors, LaminaJsonContext.Default.CorsDto));
            command.Add("@mode", url.InvokeMode);
            command.Add("@created", url.CreationTime.ToString("O", CultureInfo.InvariantCulture));
            command.Add("@modified", url.LastModifiedTime.ToString("O", CultureInfo.InvariantCulture));
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Deletes a function with its tags, versions and aliases. False if there was no such function.</summary>
    public async Task<bool> DeleteFunctionAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using (var dependents = connection.CreateCommand())
        {
            // Explicit rather than relying on ON DELETE CASCADE alone, so an old file without the pragma stays clean.
            dependents.Transaction = transaction;
            dependents.CommandText = """
                DELETE FROM function_tags WHERE function_name = @name;
                DELETE FROM provisioned_concurrency WHERE function_name = @name;
                DELETE FROM event_invoke_configs WHERE function_name = @name;
                DELETE FROM function_policies WHERE function_name = @name;
                DELETE FROM function_urls WHERE function_name = @name;
                DELETE FROM function_aliases WHERE function_name = @name;
                DELETE FROM function_versions WHERE function_name = @name;
                """;
            dependents.Add("@name", name);
            await dependents.ExecuteNonQueryAsync(cancellationToken);
        }
        int deleted;
        await using (var function = connection.CreateCommand())
        {
            function.Transaction = transaction;
            function.CommandText = "DELETE FROM functions WHERE name = @name;";
            function.Add("@name", name);
            deleted = await function.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return deleted == 1;
    }

    /// <summary>The function's tags (function-level, not per version); empty when none.</summary>
    public async Task<Dictionary<string, string>> LoadTagsAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT key, value FROM function_tags WHERE function_name = @name ORDER BY key;";
        command.Add("@name", name);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken))
        {
            tags[reader.GetString(0)] = reader.GetString(1);
        }
        return tags;
    }

    /// <summary>
    /// Adds or replaces tags of a function (TagResource), in one transaction. The registry checks that the function
    /// exists and the tag count limit under its lock.
    /// </summary>
    public async Task UpsertTagsAsync(string name, IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        foreach (var (key, value) in tags)
        {
            await using var tag = connection.CreateCommand();
            tag.Transaction = transaction;
            tag.CommandText = """
                INSERT INTO function_tags (function_name, key, value) VALUES (@name, @key, @value)
                ON CONFLICT (function_name, key) DO UPDATE SET value = excluded.value;
                """;
            tag.Add("@name", name);
            tag.Add("@key", key);
            tag.Add("@value", value);
            await tag.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Removes tags of a function by key (UntagResource); absent keys are ignored.</summary>
    public async Task DeleteTagsAsync(string name, IEnumerable<string> keys, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        foreach (var key in keys)
        {
            await using var tag = connection.CreateCommand();
            tag.Transaction = transaction;
            tag.CommandText = "DELETE FROM function_tags WHERE function_name = @name AND key = @key;";
            tag.Add("@name", name);
            tag.Add("@key", key);
            await tag.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Stores a newly published version and raises the function's version counter, in one transaction.</summary>
    public async Task InsertVersionAsync(PublishedVersion version, CancellationToken cancellationToken)
    {
        var config = version.Config;
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = """
                INSERT INTO function_versions (function_name, version, source_revision_id, config_json, created_at)
                VALUES (@name, @version, @source, @json, @at);
                UPDATE functions SET last_version = @version WHERE name = @name AND last_version < @version;
                """;
            insert.Add("@name", config.Name);
            insert.Add("@version", int.Parse(config.Version, CultureInfo.InvariantCulture));
            insert.Add("@source", version.SourceRevisionId);
            insert.Add("@json", Serialize(config));
            insert.Add("@at", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        // Durability checkpoint: the version exists, and its number is taken for good.
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Deletes one published version (the counter stays: numbers are never reused).</summary>
    public async Task DeleteVersionAsync(string name, int version, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        // Its provisioned concurrency and asynchronous invocation settings go with it, in the same transaction.
        command.CommandText = """
            DELETE FROM provisioned_concurrency WHERE function_name = @name AND qualifier = @qualifier;
            DELETE FROM event_invoke_configs WHERE function_name = @name AND qualifier = @qualifier;
            DELETE FROM function_policies WHERE function_name = @name AND qualifier = @qualifier;
            DELETE FROM function_versions WHERE function_name = @name AND version = @version;
            """;
        command.Add("@name", name);
        command.Add("@version", version);
        command.Add("@qualifier", version.ToString(CultureInfo.InvariantCulture));
        await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Inserts or replaces an alias (the registry checks existence and RevisionId under its lock).</summary>
    public async Task UpsertAliasAsync(string functionName, AliasConfig alias, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO function_aliases (function_name, name, function_version, description, additional_version, additional_weight, revision_id)
            VALUES (@function, @name, @version, @description, @additional, @weight, @revision)
            ON CONFLICT (function_name, name) DO UPDATE SET
                function_version = excluded.function_version, description = excluded.description,
                additional_version = excluded.additional_version, additional_weight = excluded.additional_weight,
                revision_id = excluded.revision_id;
            """;
        command.Add("@function", functionName);
        command.Add("@name", alias.Name);
        command.Add("@version", alias.FunctionVersion);
        command.Add("@description", alias.Description);
        command.Add("@additional", (object?)alias.AdditionalVersion ?? DBNull.Value);
        command.Add("@weight", alias.AdditionalVersion is null ? DBNull.Value : alias.AdditionalWeight);
        command.Add("@revision", alias.RevisionId);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task DeleteAliasAsync(string functionName, string alias, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            DELETE FROM provisioned_concurrency WHERE function_name = @function AND qualifier = @name;
            DELETE FROM event_invoke_configs WHERE function_name = @function AND qualifier = @name;
            DELETE FROM function_policies WHERE function_name = @function AND qualifier = @name;
            DELETE FROM function_urls WHERE function_name = @function AND qualifier = @name;
            DELETE FROM function_aliases WHERE function_name = @function AND name = @name;
            """;
        command.Add("@function", functionName);
        command.Add("@name", alias);
        await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Every layer: its version counter and its remaining versions, for the layer registry at startup.</summary>
    public List<(string Name, long LastVersion, List<LayerVersion> Versions)> LoadLayers()
    {
        using var connection = Open();
        var layers = new Dictionary<string, (long LastVersion, List<LayerVersion> Versions)>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT name, last_version FROM layers;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                layers[reader.GetString(0)] = (reader.GetInt64(1), []);
            }
        }
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT layer_name, layer_json FROM layer_versions ORDER BY layer_name, version;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                if (layers.TryGetValue(reader.GetString(0), out var layer))
                {
                    var stored = JsonSerializer.Deserialize(reader.GetString(1), LaminaJsonContext.Default.StoredLayerVersion)
                        ?? throw new InvalidDataException($"A null layer version row in {database.FilePath}.");
                    layer.Versions.Add(stored.ToLayerVersion());
                }
            }
        }
        return layers.Select(static l => (l.Key, l.Value.LastVersion, l.Value.Versions)).ToList();
    }

    /// <summary>Stores a new layer version and raises the layer's version counter, in one transaction.</summary>
    public async Task InsertLayerVersionAsync(LayerVersion version, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = """
                INSERT INTO layers (name, last_version) VALUES (@name, @version)
                ON CONFLICT (name) DO UPDATE SET last_version = CASE WHEN excluded.last_version > layers.last_version THEN excluded.last_version ELSE layers.last_version END;
                INSERT INTO layer_versions (layer_name, version, code_sha256, layer_json) VALUES (@name, @version, @sha, @json);
                """;
            insert.Add("@name", version.LayerName);
            insert.Add("@version", version.Version);
            insert.Add("@sha", version.CodeSha256);
            insert.Add("@json", JsonSerializer.Serialize(StoredLayerVersion.From(version), LaminaJsonContext.Default.StoredLayerVersion));
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        // Durability checkpoint: the layer version exists, and its number is taken for good.
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Deletes a layer version's record (its zip stays in the code store for the functions that use it).</summary>
    public async Task DeleteLayerVersionAsync(string name, long version, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM layer_versions WHERE layer_name = @name AND version = @version;";
        command.Add("@name", name);
        command.Add("@version", version);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static string Serialize(FunctionConfig config) =>
        JsonSerializer.Serialize(StoredFunctionConfig.From(config), LaminaJsonContext.Default.StoredFunctionConfig);

    private FunctionConfig DeserializeConfig(string json) =>
        (JsonSerializer.Deserialize(json, LaminaJsonContext.Default.StoredFunctionConfig)
            ?? throw new InvalidDataException($"A null configuration row in {database.FilePath}.")).ToConfig();
}

/// <summary>
/// The persisted shape of a <see cref="FunctionConfig"/>, kept apart from the in-memory record so either can change
/// without breaking the other. New members must be optional (old rows lack them).
/// </summary>
internal sealed class StoredFunctionConfig
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "$LATEST";
    public string Runtime { get; set; } = "";
    public string Role { get; set; } = "";
    public string Handler { get; set; } = "";
    public string Description { get; set; } = "";
    public int Timeout { get; set; } = 3;
    public int MemorySize { get; set; } = 128;
    public int EphemeralStorageSize { get; set; } = 512;
    public string Architecture { get; set; } = "x86_64";
    public Dictionary<string, string>? Environment { get; set; }
    public string CodeSha256 { get; set; } = "";
    public long CodeSize { get; set; }
    public DateTimeOffset LastModified { get; set; }
    public string RevisionId { get; set; } = "";
    public string TracingMode { get; set; } = "PassThrough";
    public string LogFormat { get; set; } = "Text";
    public string? LogGroup { get; set; }
    public string? ApplicationLogLevel { get; set; }
    public string? SystemLogLevel { get; set; }
    public string? DeadLetterTargetArn { get; set; }
    public List<StoredFunctionLayer>? Layers { get; set; }
    public int? DurableExecutionTimeout { get; set; }
    public int? DurableRetentionPeriodInDays { get; set; }

    public static StoredFunctionConfig From(FunctionConfig c) => new()
    {
        Name = c.Name,
        Version = c.Version,
        Runtime = c.Runtime,
        Role = c.Role,
        Handler = c.Handler,
        Description = c.Description,
        Timeout = c.Timeout,
        MemorySize = c.MemorySize,
        EphemeralStorageSize = c.EphemeralStorageSize,
        Architecture = c.Architecture,
        Environment = c.EnvironmentVariables.Count == 0 ? null : new Dictionary<string, string>(c.EnvironmentVariables, StringComparer.Ordinal),
        CodeSha256 = c.CodeSha256,
        CodeSize = c.CodeSize,
        LastModified = c.LastModified,
        RevisionId = c.RevisionId,
        TracingMode = c.TracingMode,
        LogFormat = c.LogFormat,
        LogGroup = c.LogGroup,
        ApplicationLogLevel = c.ApplicationLogLevel,
        SystemLogLevel = c.SystemLogLevel,
        DeadLetterTargetArn = c.DeadLetterTargetArn,
        Layers = c.Layers.Count == 0 ? null : c.Layers.Select(static l => new StoredFunctionLayer { Arn = l.Arn, CodeSize = l.CodeSize, CodeSha256 = l.CodeSha256 }).ToList(),
        DurableExecutionTimeout = c.Durable?.ExecutionTimeout,
        DurableRetentionPeriodInDays = c.Durable?.RetentionPeriodInDays,
    };

    public FunctionConfig ToConfig() => new()
    {
        Name = Name,
        Version = Version,
        Runtime = Runtime,
        Role = Role,
        Handler = Handler,
        Description = Description,
        Timeout = Timeout,
        MemorySize = MemorySize,
        EphemeralStorageSize = EphemeralStorageSize,
        Architecture = Architecture,
        EnvironmentVariables = Environment ?? new Dictionary<string, string>(StringComparer.Ordinal),
        CodeSha256 = CodeSha256,
        CodeSize = CodeSize,
        LastModified = LastModified,
        RevisionId = RevisionId,
        TracingMode = TracingMode,
        LogFormat = LogFormat,
        LogGroup = LogGroup,
        ApplicationLogLevel = ApplicationLogLevel,
        SystemLogLevel = SystemLogLevel,
        DeadLetterTargetArn = DeadLetterTargetArn,
        Layers = Layers is null ? [] : Layers.Select(static l => new FunctionLayer(l.Arn, l.CodeSize, l.CodeSha256)).ToList(),
        Durable = DurableExecutionTimeout is { } timeout ? new DurableSettings(timeout, DurableRetentionPeriodInDays ?? DurableSettings.DefaultRetentionPeriodInDays) : null,
    };
}

internal sealed class StoredFunctionLayer
{
    public string Arn { get; set; } = "";
    public long CodeSize { get; set; }
    public string CodeSha256 { get; set; } = "";
}

/// <summary>The persisted shape of a <see cref="LayerVersion"/>. New members must be optional.</summary>
internal sealed class StoredLayerVersion
{
    public string LayerName { get; set; } = "";
    public long Version { get; set; }
    public string Description { get; set; } = "";
    public string? LicenseInfo { get; set; }
    public List<string>? CompatibleRuntimes { get; set; }
    public List<string>? CompatibleArchitectures { get; set; }
    public string CodeSha256 { get; set; } = "";
    public long CodeSize { get; set; }
    public DateTimeOffset CreatedDate { get; set; }

    public static StoredLayerVersion From(LayerVersion v) => new()
    {
        LayerName = v.LayerName,
        Version = v.Version,
        Description = v.Description,
        LicenseInfo = v.LicenseInfo,
        CompatibleRuntimes = v.CompatibleRuntimes?.ToList(),
        CompatibleArchitectures = v.CompatibleArchitectures?.ToList(),
        CodeSha256 = v.CodeSha256,
        CodeSize = v.CodeSize,
        CreatedDate = v.CreatedDate,
    };

    public LayerVersion ToLayerVersion() => new()
    {
        LayerName = LayerName,
        Version = Version,
        Description = Description,
        LicenseInfo = LicenseInfo,
        CompatibleRuntimes = CompatibleRuntimes,
        CompatibleArchitectures = CompatibleArchitectures,
        CodeSha256 = CodeSha256,
        CodeSize = CodeSize,
        CreatedDate = CreatedDate,
    };
}
