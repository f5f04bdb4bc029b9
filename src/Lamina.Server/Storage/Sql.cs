using System.Data.Common;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// What differs between the two engines, in one place. Statements are written once, in the subset both speak
/// (<c>@name</c> parameters, <c>ON CONFLICT</c>, <c>RETURNING</c>); the schema steps are written in SQLite's words and
/// <see cref="ForPostgres"/> maps the three type names that mean something else there. Anything beyond that is an
/// explicit <c>if (database.IsPostgres)</c> at the statement, so both versions read side by side.
/// </summary>
internal static partial class Sql
{
    /// <summary>
    /// A schema step for PostgreSQL: <c>INTEGER</c> → <c>BIGINT</c> (SQLite's integers are 64-bit; Unix milliseconds
    /// overflow PostgreSQL's 32-bit one), <c>REAL</c> → <c>DOUBLE PRECISION</c> (SQLite's is 8 bytes, PostgreSQL's 4),
    /// <c>BLOB</c> → <c>BYTEA</c>. Words inside SQL comments are left as they are.
    /// </summary>
    public static string ForPostgres(string sqliteDdl) => TypeName().Replace(sqliteDdl, static m => m.Value switch
    {
        "INTEGER" => "BIGINT",
        "REAL" => "DOUBLE PRECISION",
        "BLOB" => "BYTEA",
        _ => m.Value, // a comment: kept
    });

    // A comment (to the end of its line) is matched first so that nothing inside it is rewritten.
    [GeneratedRegex(@"--[^\n]*|\b(INTEGER|REAL|BLOB)\b", RegexOptions.CultureInvariant)]
    private static partial Regex TypeName();

    /// <summary>Adds a parameter (<c>@name</c> in the statement); null becomes SQL NULL.</summary>
    public static DbParameter Add(this DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        if (parameter.Value is DBNull && parameter is NpgsqlParameter postgres)
        {
            // Leave the type to the statement (PostgreSQL infers it from where the parameter is used).
            postgres.NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Unknown;
        }
        command.Parameters.Add(parameter);
        return parameter;
    }

    /// <summary>Whether <paramref name="e"/> is a unique or primary key violation, on either engine.</summary>
    public static bool IsUniqueViolation(Exception e) => e switch
    {
        SqliteException { SqliteErrorCode: 19 } => true, // SQLITE_CONSTRAINT
        PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } => true,
        _ => false,
    };
}
